import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkHistory, unionLength, type AckedWrite, type FailedWrite, type FaultEvent, type History, type Promises } from './checker.js';

const STRICT: Promises = { lossAllowed: false, maxLagBytes: 1 << 20 };
const ASYNC: Promises = { lossAllowed: true, maxLagBytes: 1 << 20 };

/** Acks every `stepMs` from `fromMs`, values from `firstValue`, on one member and timeline. */
function acks(member: string, timeline: number, firstValue: number, n: number, fromMs: number, stepMs = 10, lane = 'main'): AckedWrite[] {
  return Array.from({ length: n }, (_, i) => ({
    value: firstValue + i,
    member,
    timeline,
    lsn: `0/${(0x1000000 + (firstValue + i) * 100).toString(16).toUpperCase()}`,
    sentAtMs: fromMs + i * stepMs - 2,
    ackAtMs: fromMs + i * stepMs,
    lane,
  }));
}

const fault = (id: string, roundStartMs: number, injectedAtMs: number, healedAtMs = injectedAtMs, kind = 'freeze'): FaultEvent => ({ id, kind, target: 'm1', roundStartMs, injectedAtMs, healedAtMs });

/** A clean failover: m1 writes on timeline 1, is frozen at 1000, m2 writes on timeline 2 from 3000. */
function cleanFailover(): History {
  const a = acks('m1', 1, 1, 100, 0); // 0..990
  const b = acks('m2', 2, 200, 100, 3000); // 3000..3990
  const failures: FailedWrite[] = [{ value: 101, target: 'm1', sentAtMs: 995, failedAtMs: 2995, error: 'timeout' }];
  return {
    acks: [...a, ...b],
    failures,
    faults: [fault('1', 0, 1000, 5000)],
    recoveries: [{ faultId: '1', allStreamingAtMs: 8000 }],
    final: { primary: 'm2', values: [...a, ...b].map((w) => w.value) },
  };
}

describe('checkHistory', () => {
  it('passes a clean failover and measures unavailability, recovery and rejoin', () => {
    const r = checkHistory(cleanFailover(), STRICT);
    assert.deepEqual(r.violations, []);
    assert.equal(r.ok, true);
    assert.equal(r.lostWrites.length, 0);
    assert.equal(r.overlaps.length, 0);
    assert.equal(r.epochs.length, 2);
    const round = r.rounds[0]!;
    assert.equal(round.unavailableMs, 2000); // first write sent after 1000 is acked at 3000
    assert.equal(round.recoveredMs, 7000);
    assert.equal(round.rejoinMs, 3000);
    assert.equal(round.overlapMs, 0);
  });

  it('does not let an orphaned backend acknowledging just after a kill hide the failover that follows', () => {
    const h = cleanFailover();
    const orphan: AckedWrite = { value: 150, member: 'm1', timeline: 1, sentAtMs: 1001, ackAtMs: 1005 };
    const r = checkHistory({ ...h, acks: [...h.acks, orphan], final: { ...h.final, values: [...h.final.values, 150] } }, STRICT);
    assert.equal(r.rounds[0]?.firstAckMs, 5);
    assert.equal(r.rounds[0]?.unavailableMs, 1995);
    assert.equal(r.ok, true);
  });

  it('catches a planted lost write and names its member, timeline and round', () => {
    const h = cleanFailover();
    const r = checkHistory({ ...h, final: { ...h.final, values: h.final.values.filter((v) => v !== 100) } }, STRICT);
    assert.deepEqual(r.lostWrites, [{ value: 100, member: 'm1', timeline: 1, ackAtMs: 990, faultId: '1' }]);
    assert.equal(r.ok, false);
    assert.deepEqual(r.violations.map((v) => v.code), ['lost-writes']);
    assert.equal(r.rounds[0]?.lostWrites, 1);
  });

  it('reports lost writes in async mode without failing while their WAL stays within maximum_lag_on_failover', () => {
    const h = cleanFailover();
    const final = { ...h.final, values: h.final.values.filter((v) => v < 98 || v > 100) };
    const r = checkHistory({ ...h, final }, ASYNC);
    assert.equal(r.lostWrites.length, 3);
    // lsn of 100 − lsn of 97 (the last surviving write of that epoch below the lost ones) = 300 bytes.
    assert.equal(r.rounds[0]?.lostWalBytes, 300);
    assert.equal(r.ok, true);
    const tight = checkHistory({ ...h, final }, { lossAllowed: true, maxLagBytes: 200 });
    assert.deepEqual(tight.violations.map((v) => v.code), ['lost-beyond-max-lag']);
  });

  it('catches interleaved acknowledgements from two members (a split brain on one timeline pair)', () => {
    const h = cleanFailover();
    // The old primary m1 wakes up and acknowledges writes from 3500 to 3700 (every 20 ms, a probe),
    // while m2 (timeline 2) writes from 3000 to 3990.
    const late = acks('m1', 1, 5000, 11, 3500, 20, 'probe');
    const r = checkHistory({ ...h, acks: [...h.acks, ...late], final: { ...h.final, values: [...h.final.values, ...late.map((w) => w.value)] } }, STRICT);
    assert.equal(r.overlaps.length, 1);
    const o = r.overlaps[0]!;
    assert.equal(o.kind, 'interleaved');
    assert.deepEqual(o.epochs, [{ member: 'm1', timeline: 1 }, { member: 'm2', timeline: 2 }]);
    // Evidence: from m2's first write to m1's last one; concurrently active: 3500..3700 only (m1's
    // silence from 990 to 3500, frozen, is not counted).
    assert.equal(o.fromMs, 3000);
    assert.equal(o.toMs, 3700);
    assert.equal(o.spanMs, 700);
    assert.equal(o.overlapMs, 200);
    assert.equal(r.overlapMs, 200);
    assert.equal(r.overlapSpanMs, 700);
    assert.equal(o.certain, true);
    assert.equal(r.rounds[0]?.overlapMs, 200);
    assert.ok(r.violations.some((v) => v.code === 'overlap'));
    assert.equal(r.ok, false);
  });

  it('catches a single write inside another primary span as an overlap even though it lasts 0 ms', () => {
    const a = acks('m1', 1, 1, 10, 0); // 0..90
    const b: AckedWrite = { value: 50, member: 'm2', timeline: 2, sentAtMs: 44, ackAtMs: 45 };
    const r = checkHistory({ acks: [...a, b], failures: [], faults: [fault('1', 0, 20)], recoveries: [{ faultId: '1', allStreamingAtMs: 100 }], final: { primary: 'm1', values: [...a.map((w) => w.value), 50] } }, STRICT);
    assert.equal(r.overlaps.length, 1);
    assert.equal(r.overlaps[0]?.overlapMs, 0);
    assert.equal(r.overlaps[0]?.certain, true); // sent at 44, after m1 acked at 0; acked at 45, before m1 sent its last write
    assert.equal(r.ok, false);
  });

  it('catches a write on an older timeline after the newer timeline began, even with disjoint spans', () => {
    const b = acks('m2', 2, 1, 10, 1000); // 1000..1090
    const a = acks('m1', 1, 100, 5, 2000); // 2000..2040: m1 never rewound, still writable on timeline 1
    const r = checkHistory({ acks: [...b, ...a], failures: [], faults: [fault('1', 0, 500)], recoveries: [{ faultId: '1', allStreamingAtMs: 3000 }], final: { primary: 'm2', values: b.map((w) => w.value) } }, STRICT);
    const o = r.overlaps.find((x) => x.kind === 'stale-timeline');
    assert.ok(o, 'a stale-timeline overlap');
    assert.equal(o.fromMs, 1000);
    assert.equal(o.toMs, 2040);
    assert.equal(o.certain, true);
    assert.equal(o.spanMs, 1040);
    assert.equal(r.overlapMs, 0); // never both active at once: m2 had stopped at 1090
    assert.equal(r.ok, false);
    assert.equal(r.lostWrites.length, 5); // and its writes are lost
  });

  it('marks an overlap as uncertain when the late write may have committed before the new primary took over', () => {
    const b = acks('m2', 2, 1, 10, 1000); // 1000..1090
    // Sent at 900 (before m2 acknowledged anything), acknowledged at 1050: its commit may precede m2's.
    const slow: AckedWrite = { value: 100, member: 'm1', timeline: 1, sentAtMs: 900, ackAtMs: 1050 };
    const r = checkHistory({ acks: [...acks('m1', 1, 200, 10, 0), slow, ...b], failures: [], faults: [fault('1', 0, 500)], recoveries: [{ faultId: '1', allStreamingAtMs: 2000 }], final: { primary: 'm2', values: [] } }, ASYNC);
    assert.equal(r.overlaps.length, 1);
    assert.equal(r.overlaps[0]?.certain, false);
    assert.ok(r.violations.some((v) => v.code === 'overlap' && v.message.includes('blurred')));
  });

  it('catches two members writing on the same timeline (a forked history)', () => {
    const a = acks('m1', 2, 1, 5, 0);
    const b = acks('m2', 2, 10, 5, 1000);
    const r = checkHistory({ acks: [...a, ...b], failures: [], faults: [fault('1', 0, 100)], recoveries: [{ faultId: '1', allStreamingAtMs: 2000 }], final: { primary: 'm2', values: [...a, ...b].map((w) => w.value) } }, STRICT);
    assert.deepEqual(r.overlaps.map((o) => o.kind), ['forked-timeline']);
    assert.equal(r.ok, false);
  });

  it('does not call a restart in place (same member, same timeline) or a later promotion of the old primary an overlap', () => {
    const a1 = acks('m1', 1, 1, 10, 0);
    const a2 = acks('m1', 1, 20, 60, 2000); // postgres crashed and came back in place; writes until 2590
    const b = acks('m2', 2, 100, 110, 5000); // until 6090
    const a3 = acks('m1', 3, 300, 10, 9000); // m1 promoted again later, on a new timeline
    const all = [...a1, ...a2, ...b, ...a3];
    const r = checkHistory({ acks: all, failures: [], faults: [fault('1', 0, 500), fault('2', 3000, 4000), fault('3', 7000, 8000)], recoveries: [{ faultId: '1', allStreamingAtMs: 2500 }, { faultId: '2', allStreamingAtMs: 6000 }, { faultId: '3', allStreamingAtMs: 9500 }], final: { primary: 'm1', values: all.map((w) => w.value) } }, STRICT);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.rounds.map((x) => x.unavailableMs), [1500, 1000, 1000]);
  });

  it('flags values in the final table that were never sent, and counts unknown-outcome writes that committed', () => {
    const h = cleanFailover();
    const r = checkHistory({ ...h, final: { ...h.final, values: [...h.final.values, 101, 424242] } }, STRICT);
    assert.deepEqual(r.phantomValues, [424242]);
    assert.equal(r.indeterminateCommitted, 1);
    assert.deepEqual(r.violations.map((v) => v.code), ['phantom-writes']);
  });

  it('fails a round with no acknowledged write after the fault, or without recovery; a skipped round is neither', () => {
    const a = acks('m1', 1, 1, 10, 0);
    const h: History = {
      acks: a,
      failures: [],
      faults: [fault('1', 0, 500), { ...fault('2', 600, 700), skipped: 'no router' }],
      recoveries: [],
      final: { primary: 'm1', values: a.map((w) => w.value) },
    };
    const r = checkHistory(h, STRICT);
    assert.deepEqual(r.violations.map((v) => `${v.code}:${v.faultId ?? ''}`), ['never-available:1', 'not-recovered:1']);
    assert.equal(r.rounds[1]?.skipped, 'no router');
  });

  it('measures the union of intervals without counting overlaps twice', () => {
    assert.equal(unionLength([[0, 10], [5, 15], [20, 25], [30, 29]]), 20);
    assert.equal(unionLength([]), 0);
  });
});

/** A random clean history: epochs of increasing timelines, disjoint in time, on random members. */
const cleanHistory = fc
  .record({
    epochs: fc.array(fc.record({ member: fc.constantFrom('m1', 'm2', 'm3'), writes: fc.integer({ min: 1, max: 20 }), gapMs: fc.integer({ min: 1, max: 3000 }), stepMs: fc.integer({ min: 1, max: 50 }) }), { minLength: 1, maxLength: 6 }),
    failedEvery: fc.integer({ min: 2, max: 7 }),
    committedMask: fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
  })
  .map(({ epochs, failedEvery, committedMask }) => {
    const all: AckedWrite[] = [];
    const failures: FailedWrite[] = [];
    const faults: FaultEvent[] = [];
    let t = 0;
    let value = 1;
    epochs.forEach((e, i) => {
      faults.push({ id: String(i + 1), kind: 'kill', target: e.member, roundStartMs: t, injectedAtMs: t + 1 });
      t += e.gapMs;
      for (let k = 0; k < e.writes; k++) {
        if (value % failedEvery === 0) failures.push({ value: value++, target: e.member, sentAtMs: t, failedAtMs: t + 1, error: 'x' });
        all.push({ value: value++, member: e.member, timeline: i + 1, sentAtMs: t, ackAtMs: t + 1 });
        t += e.stepMs;
      }
    });
    const committed = failures.filter((_, i) => committedMask[i % committedMask.length] === true).map((f) => f.value);
    const history: History = {
      acks: all,
      failures,
      faults,
      recoveries: faults.map((f) => ({ faultId: f.id, allStreamingAtMs: t + 10 })),
      final: { primary: 'm1', values: [...all.map((a) => a.value), ...committed] },
    };
    return history;
  });

describe('checkHistory properties', () => {
  it('never reports loss or overlap for a history without planted ones', () => {
    fc.assert(
      fc.property(cleanHistory, (h) => {
        const r = checkHistory(h, STRICT);
        assert.deepEqual(r.lostWrites, []);
        assert.deepEqual(r.overlaps, []);
        assert.equal(r.ok, true, JSON.stringify(r.violations));
      }),
      { numRuns: 300 },
    );
  });

  it('reports exactly the acknowledged writes removed from the final table', () => {
    fc.assert(
      fc.property(cleanHistory, fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), (h, picks) => {
        const removed = new Set(picks.map((p) => h.acks[p % h.acks.length]!.value));
        const r = checkHistory({ ...h, final: { ...h.final, values: h.final.values.filter((v) => !removed.has(v)) } }, STRICT);
        assert.deepEqual(r.lostWrites.map((l) => l.value), [...removed].sort((a, b) => a - b));
        assert.equal(r.ok, false);
      }),
      { numRuns: 300 },
    );
  });

  it('reports an overlap whenever another member acknowledges a write inside an epoch', () => {
    fc.assert(
      fc.property(cleanHistory, fc.nat(), (h, pick) => {
        const host = h.acks[pick % h.acks.length]!;
        const other = host.member === 'm1' ? 'm2' : 'm1';
        const intruder: AckedWrite = { value: 1_000_000, member: other, timeline: host.timeline + (pick % 3) - 1, sentAtMs: host.ackAtMs, ackAtMs: host.ackAtMs };
        const r = checkHistory({ ...h, acks: [...h.acks, intruder], final: { ...h.final, values: [...h.final.values, intruder.value] } }, STRICT);
        assert.ok(r.overlaps.length > 0, 'an overlap');
        assert.ok(r.violations.some((v) => v.code === 'overlap'));
      }),
      { numRuns: 300 },
    );
  });
});
