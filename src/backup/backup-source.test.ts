import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseBackupSource, type MemberHealth } from './backup-source.js';

const leader: MemberHealth = { name: 'demo-1', isLeader: true, role: 'primary', state: 'running', timeline: 2, lagBytes: 0 };
const replica = (name: string, over: Partial<MemberHealth> = {}): MemberHealth => ({ name, isLeader: false, role: 'replica', state: 'streaming', timeline: 2, lagBytes: 0, ...over });

describe('where a backup reads from', () => {
  const cases: ReadonlyArray<readonly [string, readonly MemberHealth[], string | undefined]> = [
    ['takes a streaming standby rather than the primary', [leader, replica('demo-2')], 'demo-2'],
    ['takes the standby least behind', [leader, replica('demo-2', { lagBytes: 4096 }), replica('demo-3', { lagBytes: 0 })], 'demo-3'],
    ['breaks a tie by name', [leader, replica('demo-3'), replica('demo-2')], 'demo-2'],
    ['skips a replica that is not streaming', [leader, replica('demo-2', { state: 'starting' })], undefined],
    ['skips a replica on another timeline', [leader, replica('demo-2', { timeline: 1 })], undefined],
    ['skips a replica whose lag is unknown', [leader, replica('demo-2', { lagBytes: undefined })], undefined],
    ['uses the primary when no standby is healthy', [leader], undefined],
  ];
  for (const [name, members, standby] of cases) {
    it(name, () => {
      const c = chooseBackupSource(members);
      assert.ok(c.ok, c.reason);
      assert.equal(c.primary, 'demo-1');
      assert.equal(c.standby, standby);
    });
  }

  it('refuses without a leader: the backup is started and stopped on the primary', () => {
    const c = chooseBackupSource([replica('demo-2')]);
    assert.equal(c.ok, false);
    assert.match(c.reason, /no leader/);
  });

  it('refuses while the leader is not a running primary', () => {
    const c = chooseBackupSource([{ ...leader, state: 'starting' }, replica('demo-2')]);
    assert.equal(c.ok, false);
    assert.match(c.reason, /demo-1 is starting/);
  });
});
