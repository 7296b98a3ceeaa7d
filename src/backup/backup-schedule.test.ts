import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cronMatches, latestSlot, nextSlot, parseCron, type Cron } from './cron.js';
import { abandonedOutcome, decodeSchedules, decodeSlotRecord, dueSlots, isAbandonedClaim, slotKey, slotKeysToPrune, SLOT_LOOK_BACK_MS, type SlotRecord } from './backup-schedule.js';

const cron = (text: string): Cron => {
  const c = parseCron(text);
  if (!c.ok) assert.fail(c.error.message);
  return c.value;
};
const at = (iso: string): number => Date.parse(iso);

describe('cron expressions (5 fields, UTC)', () => {
  const matches: ReadonlyArray<readonly [string, string, boolean]> = [
    ['* * * * *', '2026-12-02T03:17:00Z', true],
    ['0 1 * * 0', '2026-12-06T01:00:00Z', true], // a Sunday
    ['0 1 * * 0', '2026-12-07T01:00:00Z', false],
    ['0 1 * * 7', '2026-12-06T01:00:00Z', true], // 7 is Sunday too
    ['*/15 * * * *', '2026-12-02T03:45:00Z', true],
    ['*/15 * * * *', '2026-12-02T03:46:00Z', false],
    ['0 1 * * 1-6', '2026-12-05T01:00:00Z', true], // Saturday
    ['5,35 2-4 * * *', '2026-12-02T04:35:00Z', true],
    ['0 0 1 jan *', '2027-01-01T00:00:00Z', true],
    ['0 0 1 * mon', '2026-12-07T00:00:00Z', true], // day-of-month OR day-of-week when both are set
    ['0 0 1 * mon', '2026-12-01T00:00:00Z', true],
    ['0 0 1 * mon', '2026-12-02T00:00:00Z', false],
    ['10-20/5 * * * *', '2026-12-02T03:15:00Z', true],
    ['10-20/5 * * * *', '2026-12-02T03:25:00Z', false],
  ];
  for (const [text, iso, expected] of matches) it(`${text} ${expected ? 'matches' : 'does not match'} ${iso}`, () => assert.equal(cronMatches(cron(text), at(iso)), expected));

  const bad: ReadonlyArray<readonly [string, string, number]> = [
    ['0 25 * * *', 'hour "25": must be within 0-23', 3],
    ['61 * * * *', 'minute "61": must be within 0-59', 1],
    ['* * *', 'a cron schedule has 5 fields (minute hour day-of-month month day-of-week), got 3: "* * *"', 1],
    ['* * * * * *', 'a cron schedule has 5 fields (minute hour day-of-month month day-of-week), got 6: "* * * * * *"', 1],
    ['*/0 * * * *', 'minute "*/0": step must be at least 1 ("*/0")', 1],
    ['5-1 * * * *', 'minute "5-1": range 5-1 runs backwards', 1],
    ['* * * foo *', 'month "foo": "foo" is not a number or a name (jan, feb, mar, apr, may, jun, jul, aug, sep, oct, nov, dec)', 7],
    ['* * 0 * *', 'day of month "0": must be within 1-31', 5],
    ['@daily', 'a cron schedule has 5 fields (minute hour day-of-month month day-of-week), got 1: "@daily"', 1],
  ];
  for (const [text, message, col] of bad) {
    it(`refuses ${JSON.stringify(text)} at column ${col}`, () => {
      const r = parseCron(text);
      assert.deepEqual(r.ok ? undefined : r.error, { message, col });
    });
  }

  it('finds the newest slot at or before now, and the next one after', () => {
    const c = cron('0 1 * * *');
    assert.equal(latestSlot(c, at('2026-12-02T01:04:59Z'), 10 * 60_000), at('2026-12-02T01:00:00Z'));
    assert.equal(latestSlot(c, at('2026-12-02T01:20:00Z'), 10 * 60_000), undefined, 'older than the look-back');
    assert.equal(nextSlot(c, at('2026-12-02T01:00:00Z')), at('2026-12-03T01:00:00Z'));
    assert.equal(nextSlot(cron('0 0 30 2 *'), at('2026-12-02T00:00:00Z')), undefined, 'February 30th never comes');
  });

  it('latestSlot is a matching minute, not in the future, with no matching minute after it (property over random times)', () => {
    const texts = ['* * * * *', '*/7 * * * *', '0 * * * *', '15 3 * * *', '0 1 * * 0', '30 */2 1-10 * 1-5', '0 0 1 * mon'];
    fc.assert(
      fc.property(fc.constantFrom(...texts), fc.integer({ min: at('2020-01-01T00:00:00Z'), max: at('2030-01-01T00:00:00Z') }), fc.integer({ min: 60_000, max: 3 * 3600_000 }), (text, now, lookBack) => {
        const c = cron(text);
        const s = latestSlot(c, now, lookBack);
        if (s === undefined) {
          for (let t = Math.floor(now / 60_000) * 60_000; t >= now - lookBack; t -= 60_000) assert.ok(!cronMatches(c, t));
          return;
        }
        assert.ok(s <= now && s >= now - lookBack && s % 60_000 === 0 && cronMatches(c, s));
        for (let t = s + 60_000; t <= now; t += 60_000) assert.ok(!cronMatches(c, t), `${new Date(t).toISOString()} matches after ${new Date(s).toISOString()}`);
        const n = nextSlot(c, s, 400 * 24 * 3600_000);
        assert.ok(n === undefined || n > now, 'the slot after the latest one is still to come');
      }),
      { numRuns: 300 },
    );
  });
});

describe('schedule slots', () => {
  const every = { repo: 'repo1', type: 'incr' as const, cron: cron('* * * * *') };
  const daily = { repo: 'repo1', type: 'full' as const, cron: cron('0 1 * * *') };

  it('makes one slot per schedule and minute: every leader that looks during that minute finds the same key', () => {
    fc.assert(
      fc.property(fc.integer({ min: at('2026-01-01T00:00:00Z'), max: at('2027-01-01T00:00:00Z') }), fc.integer({ min: 0, max: 59_999 }), (t, dt) => {
        const minute = Math.floor(t / 60_000) * 60_000;
        const a = dueSlots([every], minute + dt)[0];
        const b = dueSlots([every], minute + ((dt + 12_345) % 60_000))[0];
        assert.ok(a !== undefined && b !== undefined);
        assert.equal(slotKey(a.schedule.repo, a.schedule.type, a.slotMs), slotKey(b.schedule.repo, b.schedule.type, b.slotMs));
      }),
    );
  });

  it('gives a new leader the slot its predecessor may have missed, within the look-back, and not after', () => {
    assert.deepEqual(dueSlots([daily], at('2026-12-02T01:03:00Z')).map((d) => d.slotMs), [at('2026-12-02T01:00:00Z')]);
    assert.deepEqual(dueSlots([daily], at('2026-12-02T01:00:00Z') + SLOT_LOOK_BACK_MS + 60_000), []);
  });

  it('names a slot key by repository, type and UTC time', () => {
    assert.equal(slotKey('repo2', 'diff', at('2026-12-02T01:00:00Z')), 'backup/slots/repo2/diff/2026-12-02T01:00:00.000Z');
  });

  it('marks failed (never succeeded) a claim whose runner stopped: another member, no backup running, past the grace', () => {
    const claim: SlotRecord = { member: 'm2', slotMs: 0, claimedAtMs: 1_000, state: 'claimed', label: null, error: null, finishedAtMs: null };
    assert.equal(isAbandonedClaim(claim, 'm1', false, 40_000, 30_000), true);
    assert.equal(isAbandonedClaim(claim, 'm2', false, 40_000, 30_000), false, 'my own claim is mine to finish');
    assert.equal(isAbandonedClaim(claim, 'm1', true, 40_000, 30_000), false, 'a backup still holds the lock: it may be that one');
    assert.equal(isAbandonedClaim(claim, 'm1', false, 20_000, 30_000), false, 'too recent');
    assert.equal(isAbandonedClaim({ ...claim, state: 'succeeded' }, 'm1', false, 40_000, 30_000), false);
    const out = abandonedOutcome(claim, 40_000);
    assert.equal(out.state, 'failed');
    assert.match(out.error ?? '', /^interrupted: m2 stopped/);
  });

  it('prunes all but the newest slot keys', () => {
    const keys = ['k/2026-12-02T01:03:00.000Z', 'k/2026-12-02T01:01:00.000Z', 'k/2026-12-02T01:02:00.000Z'];
    assert.deepEqual(slotKeysToPrune(keys, 2), ['k/2026-12-02T01:01:00.000Z']);
    assert.deepEqual(slotKeysToPrune(keys, 5), []);
  });

  it('decodes slot records and the schedules key, refusing bad ones with the field', () => {
    const rec = { member: 'm1', slotMs: 1, claimedAtMs: 2, state: 'succeeded', label: 'x', error: null, finishedAtMs: 3, fromStandby: true };
    assert.deepEqual(decodeSlotRecord(JSON.stringify(rec)), { ok: true, value: rec });
    const bad = decodeSlotRecord(JSON.stringify({ ...rec, state: 'done' }));
    assert.ok(!bad.ok && /state/.test(bad.error));
    const s = decodeSchedules(JSON.stringify({ dir: '/d', schedules: [{ repo: 'repo1', type: 'incr', cron: '* * * * *' }] }));
    assert.ok(s.ok && s.value.dir === '/d' && s.value.schedules[0]?.type === 'incr');
    const badCron = decodeSchedules(JSON.stringify({ dir: '/d', schedules: [{ repo: 'repo1', type: 'incr', cron: '* *' }] }));
    assert.ok(!badCron.ok && /schedules\[0\]\.cron/.test(badCron.error));
  });
});
