import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRestartConditions, parseScheduledAt, parseScheduledRestartRecord, restartBlocker, scheduledRestartRecord } from './scheduled-restart.js';

describe('scheduled restarts', () => {
  it('parses only times that name their time zone, naming the field otherwise', () => {
    assert.equal(parseScheduledAt('2031-01-01T10:00:00Z'), Date.parse('2031-01-01T10:00:00Z'));
    assert.equal(parseScheduledAt('2031-01-01T10:00:00+02:00', 'schedule'), Date.parse('2031-01-01T08:00:00Z'));
    assert.equal(parseScheduledAt('2031-01-01T10:00', 'schedule'), 'schedule "2031-01-01T10:00" has no time zone (add Z or +hh:mm)');
    assert.equal(parseScheduledAt('tomorrowZ', '--scheduled'), '--scheduled "tomorrowZ" is not an ISO-8601 time');
    assert.equal(parseScheduledAt(42), 'scheduled_at must be an ISO-8601 string');
  });

  it("reads Patroni's restart conditions (master is primary, any means none) and rejects the rest", () => {
    assert.deepEqual(parseRestartConditions({ role: 'master', restart_pending: true }), { role: 'primary', restartPending: true });
    assert.deepEqual(parseRestartConditions({ role: 'any', restart_pending: false }), {});
    assert.equal(parseRestartConditions({ role: 'leader' }), 'role must be primary, replica or any (got "leader")');
    assert.equal(parseRestartConditions({ restart_pending: 'yes' }), 'restart_pending must be true or false (got "yes")');
  });

  it('blocks a restart whose role or pending condition does not hold when it is due', () => {
    assert.equal(restartBlocker({}, { role: 'replica', pendingRestart: false }), undefined);
    assert.equal(restartBlocker({ role: 'primary' }, { role: 'replica', pendingRestart: true }), 'restart conditions are not satisfied: this member is replica, not primary');
    assert.equal(restartBlocker({ restartPending: true }, { role: 'primary', pendingRestart: false }), 'restart conditions are not satisfied: no restart is pending');
    assert.equal(restartBlocker({ role: 'replica', restartPending: true }, { role: 'replica', pendingRestart: true }), undefined);
  });

  it('round-trips through the member record, and ignores a malformed one', () => {
    const s = { atMs: Date.parse('2031-01-01T10:00:00Z'), requestedAtMs: Date.parse('2030-12-31T10:00:00Z'), role: 'replica' as const, restartPending: true };
    assert.deepEqual(parseScheduledRestartRecord(JSON.parse(JSON.stringify(scheduledRestartRecord(s)))), s);
    assert.equal(parseScheduledRestartRecord({ at: 'soon', requestedAt: '2030-12-31T10:00:00Z' }), undefined);
    assert.equal(parseScheduledRestartRecord({ at: '2031-01-01T10:00:00Z', requestedAt: '2030-12-31T10:00:00Z', role: 'leader' }), undefined);
    assert.equal(parseScheduledRestartRecord(undefined), undefined);
  });
});
