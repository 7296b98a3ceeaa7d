import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_DYNAMIC_CONFIG } from './dynamic-config.js';
import { desiredSyncSet, nextSyncStep, standbyNamesFor, type SyncSet } from './sync.js';

const set = (members: string[], quorum = members.length): SyncSet => ({ members, quorum });

describe('synchronous replication steps (invariant 4)', () => {
  it('renders synchronous_standby_names for on, quorum and strict-with-nobody', () => {
    assert.equal(standbyNamesFor('on', set(['demo-3', 'demo-2']), false), 'FIRST 2 ("demo-2", "demo-3")');
    assert.equal(standbyNamesFor('quorum', set(['demo-2', 'demo-3'], 1), false), 'ANY 1 ("demo-2", "demo-3")');
    assert.equal(standbyNamesFor('on', set([]), true), '*');
    assert.equal(standbyNamesFor('on', set([]), false), '');
  });

  it('picks current members first, then the least lag, and skips nosync and non-streaming replicas', () => {
    const cfg = { ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: 'on' as const, synchronous_node_count: 1 };
    const c = (name: string, lagBytes: number, over = {}) => ({ name, streaming: true, syncState: 'async', nosync: false, leaving: false, lagBytes, ...over });
    assert.deepEqual(desiredSyncSet(cfg, [c('a', 10), c('b', 0)], []).members, ['b']);
    assert.deepEqual(desiredSyncSet(cfg, [c('a', 10), c('b', 0)], ['a']).members, ['a']);
    assert.deepEqual(desiredSyncSet(cfg, [c('a', 0, { nosync: true }), c('b', 5, { streaming: false })], []).members, []);
  });

  it('ranks members the controller is taking away last, even a current one, and leaves them out of a quorum set while enough others stream', () => {
    const on = { ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: 'on' as const, synchronous_node_count: 1 };
    const c = (name: string, lagBytes: number, over = {}) => ({ name, streaming: true, syncState: 'async', nosync: false, leaving: false, lagBytes, ...over });
    // The drained old primary has no lag and is the current member; the staying replica wins anyway.
    assert.deepEqual(desiredSyncSet(on, [c('a', 0, { leaving: true }), c('b', 900)], ['a']).members, ['b']);
    // Only leaving members stream: one of them rather than none (strict mode would block every commit).
    assert.deepEqual(desiredSyncSet(on, [c('a', 0, { leaving: true }), c('b', 0, { streaming: false })], []).members, ['a']);
    const quorum = { ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: 'quorum' as const, synchronous_node_count: 1 };
    assert.deepEqual(desiredSyncSet(quorum, [c('a', 0, { leaving: true }), c('b', 0), c('c', 0)], []), set(['b', 'c'], 1));
    const two = { ...quorum, synchronous_node_count: 2 };
    assert.deepEqual(desiredSyncSet(two, [c('a', 0, { leaving: true }), c('b', 0)], []), set(['b', 'a'], 2));
  });

  it('on mode: adds a member to PostgreSQL first and to the key only once it is sync', () => {
    const s1 = nextSyncStep('on', false, set([]), set([]), set(['b']), () => false);
    assert.deepEqual(s1, { kind: 'set-standby-names', set: set(['b']), value: 'FIRST 1 ("b")' });
    assert.deepEqual(nextSyncStep('on', false, set([]), set(['b']), set(['b']), () => false), { kind: 'none' });
    assert.deepEqual(nextSyncStep('on', false, set([]), set(['b']), set(['b']), () => true), { kind: 'write-sync-key', set: set(['b']) });
  });

  it('on mode: removes a member from the key first, then from PostgreSQL', () => {
    const s1 = nextSyncStep('on', false, set(['b']), set(['b']), set(['c']), () => true);
    assert.deepEqual(s1, { kind: 'write-sync-key', set: { members: [], quorum: 0 } });
    const s2 = nextSyncStep('on', false, set([]), set(['b']), set(['c']), () => true);
    assert.equal(s2.kind, 'set-standby-names');
  });

  it('quorum mode: grows the key first, then PostgreSQL, then shrinks the key', () => {
    const s1 = nextSyncStep('quorum', false, set(['b'], 1), set(['b'], 1), set(['b', 'c'], 1), () => true);
    assert.deepEqual(s1, { kind: 'write-sync-key', set: set(['b', 'c'], 1) });
    const s2 = nextSyncStep('quorum', false, set(['b', 'c'], 1), set(['b'], 1), set(['c'], 1), () => true);
    assert.deepEqual(s2, { kind: 'set-standby-names', set: set(['c'], 1), value: 'ANY 1 ("c")' });
    const s3 = nextSyncStep('quorum', false, set(['b', 'c'], 1), set(['c'], 1), set(['c'], 1), () => true);
    assert.deepEqual(s3, { kind: 'write-sync-key', set: set(['c'], 1) });
  });

  // The property: after any step from a safe state, every commit acknowledged under the PostgreSQL
  // set is still on a member the key lets be promoted (on: key ⊆ pg; quorum: pg ⊆ key and k_pg ≥ k_key).
  const safe = (mode: 'on' | 'quorum', key: SyncSet, pg: SyncSet): boolean =>
    mode === 'on'
      ? key.members.every((m) => pg.members.includes(m))
      : pg.members.every((m) => key.members.includes(m)) && (pg.members.length === 0 || pg.quorum >= key.quorum);

  for (const mode of ['on', 'quorum'] as const) {
    it(`${mode} mode: every sequence of steps keeps the promotable set safe and converges`, () => {
      const names = fc.subarray(['a', 'b', 'c', 'd'], { minLength: 0, maxLength: 3 });
      fc.assert(
        fc.property(names, names, fc.integer({ min: 1, max: 2 }), (start, goal, k) => {
          const mk = (ms: string[]): SyncSet => (mode === 'on' ? set(ms) : set(ms, Math.min(k, Math.max(1, ms.length))));
          let key = mk(start);
          let pg = mk(start);
          const desired = mk(goal);
          for (let i = 0; i < 10; i++) {
            assert.ok(safe(mode, key, pg), `unsafe: key ${JSON.stringify(key)} pg ${JSON.stringify(pg)}`);
            const step = nextSyncStep(mode, false, key, pg, desired, () => true);
            if (step.kind === 'none') {
              assert.deepEqual([...key.members].sort(), [...desired.members].sort());
              return;
            }
            if (step.kind === 'write-sync-key') key = step.set;
            else pg = step.set;
          }
          assert.fail('did not converge in 10 steps');
        }),
      );
    });
  }
});
