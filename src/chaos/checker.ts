/**
 * The chaos consistency checker: a PURE function from a recorded history (what the writer saw, which
 * faults were injected when, what the final primary holds) to a report of broken promises — lost
 * acknowledged writes and overlapping writable primaries (invariant 1 and 'Proof' in docs/architecture.md) — and the
 * availability figures of each fault. No I/O, no clock: every time is a number in the history.
 */
import { parseLsn } from '../core/lsn.js';

/** A write the server acknowledged: it committed `value` on `member` while on `timeline`. */
export interface AckedWrite {
  readonly value: number;
  readonly member: string;
  readonly timeline: number;
  /** pg_current_wal_lsn() read in the same statement (just before its commit record), "X/Y". */
  readonly lsn?: string;
  /** When the writer sent the statement and when the acknowledgement arrived (ms, one clock). */
  readonly sentAtMs: number;
  readonly ackAtMs: number;
  /** Which writer lane sent it ('main' follows the primary, 'probe' tries every other member). */
  readonly lane?: string;
}

/** A write whose outcome the writer does not know (error or timeout): it may or may not have committed. */
export interface FailedWrite {
  readonly value: number;
  readonly target: string;
  readonly sentAtMs: number;
  readonly failedAtMs: number;
  readonly error: string;
  readonly lane?: string;
}

/** One injected fault. Rounds follow each other; a round's window runs from its start to the next one's. */
export interface FaultEvent {
  readonly id: string;
  readonly kind: string;
  readonly target: string;
  /** Start of this round's window (before the random delay that precedes the injection). */
  readonly roundStartMs: number;
  readonly injectedAtMs: number;
  /** When the fault was undone (SIGCONT, partition healed, …); equals injectedAtMs for one-shot faults. */
  readonly healedAtMs?: number;
  /** Set when the fault could not be injected; such a round is reported as skipped, never as passed. */
  readonly skipped?: string;
}

/** The moment every member was streaming again (or the leader running) after a fault. */
export interface RecoveryEvent {
  readonly faultId: string;
  readonly allStreamingAtMs: number;
}

/** The table as read from the final primary after every fault healed. */
export interface FinalState {
  readonly primary: string;
  readonly values: readonly number[];
}

/** What the cluster promises for this run: whether acknowledged writes may be lost (async replication). */
/** How the checker reads a history. */
export interface CheckOptions {
  /**
   * A member counts as actively acknowledging writes between two of its acknowledgements less than
   * this far apart (default 1000 ms; the writer writes every few ms and probes every 200 ms).
   */
  readonly activeGapMs?: number;
}

export interface Promises {
  readonly lossAllowed: boolean;
  /** maximum_lag_on_failover in bytes: in async mode the WAL lost in one failover must stay within it. */
  readonly maxLagBytes: number;
}

export interface History {
  readonly acks: readonly AckedWrite[];
  readonly failures: readonly FailedWrite[];
  readonly faults: readonly FaultEvent[];
  readonly recoveries: readonly RecoveryEvent[];
  readonly final: FinalState;
}

export interface LostWrite {
  readonly value: number;
  readonly member: string;
  readonly timeline: number;
  readonly ackAtMs: number;
  /** Id of the fault whose round window holds the acknowledgement. */
  readonly faultId: string | undefined;
}

export type OverlapKind = 'interleaved' | 'stale-timeline' | 'forked-timeline';

/** Evidence of two writable primaries: two writer epochs (member, timeline) that must not coexist. */
export interface Overlap {
  readonly kind: OverlapKind;
  /** [older/lower-timeline epoch, other epoch]. */
  readonly epochs: readonly [EpochRef, EpochRef];
  /** The evidence interval (see checkHistory); its length is spanMs. */
  readonly fromMs: number;
  readonly toMs: number;
  readonly spanMs: number;
  /** Time both members were actively acknowledging writes (intersection of their active intervals). */
  readonly overlapMs: number;
  /** A value acknowledged inside the interval, to look up in the logs. */
  readonly witness: number;
  /**
   * True when the timing leaves no doubt: a write of one epoch was *sent* after the other epoch had
   * acknowledged a write (and, for 'interleaved', acknowledged before the other's last write was
   * sent), so its commit certainly fell inside the other's writable period. A forked timeline is
   * always certain. False only when round trips blur the order of the commits.
   */
  readonly certain: boolean;
  readonly faultId: string | undefined;
}

export interface EpochRef {
  readonly member: string;
  readonly timeline: number;
}

/** Writes accepted by one member on one timeline: one continuous writable period. */
export interface Epoch extends EpochRef {
  readonly firstAckMs: number;
  readonly lastAckMs: number;
  /** Send time of the last acknowledged write: the epoch was certainly writable over [firstAckMs, lastSentMs]. */
  readonly lastSentMs: number;
  readonly writes: number;
  readonly firstValue: number;
  readonly lastValue: number;
}

export interface RoundReport {
  readonly faultId: string;
  readonly fault: string;
  readonly target: string;
  readonly injectedAtMs: number;
  readonly skipped: string | undefined;
  /** The longest stretch without an acknowledged write from the injection to the recovery (see checkHistory). */
  readonly unavailableMs: number | null;
  /** Injection → acknowledgement of the first write sent after it; null when none succeeded. */
  readonly firstAckMs: number | null;
  readonly lostWrites: number;
  /** Estimated WAL bytes of the lost writes (see lostWalBytes). */
  readonly lostWalBytes: number;
  readonly overlapMs: number;
  /** Injection → every member streaming again; null when that was never recorded. */
  readonly recoveredMs: number | null;
  /** Heal (thaw, partition healed) → every member streaming again. */
  readonly rejoinMs: number | null;
}

export type ViolationCode = 'lost-writes' | 'lost-beyond-max-lag' | 'overlap' | 'phantom-writes' | 'never-available' | 'not-recovered';

/** A broken promise, with a sentence saying what and where. */
export interface Violation {
  readonly code: ViolationCode;
  readonly message: string;
  readonly faultId: string | undefined;
}

export interface CheckReport {
  readonly acked: number;
  readonly failed: number;
  readonly epochs: readonly Epoch[];
  readonly lostWrites: readonly LostWrite[];
  /** Values in the final table that were never sent: corruption, or a second writer. */
  readonly phantomValues: readonly number[];
  /** Failed (unknown-outcome) writes that did commit: allowed, reported for information. */
  readonly indeterminateCommitted: number;
  readonly overlaps: readonly Overlap[];
  /** Measure of the union of every overlap's concurrently-active time. */
  readonly overlapMs: number;
  /** Measure of the union of every overlap's evidence interval (includes time a stale primary was frozen). */
  readonly overlapSpanMs: number;
  readonly rounds: readonly RoundReport[];
  readonly violations: readonly Violation[];
  readonly ok: boolean;
}

/**
 * Checks a history against the promises.
 *
 * Lost writes: acknowledged values missing from the final primary's table.
 *
 * Overlap (two writable primaries). An acknowledged write proves that its member was writable at
 * its commit, which we place at the acknowledgement time (the writer's clock; statement timeouts
 * bound the gap to one round trip). An *epoch* is the set of writes one member acknowledged on one
 * timeline; it spans [first ack, last ack], and the member counts as writable over the whole span —
 * a primary leaves read-write mode only by stopping or being promoted anew, which ends its epoch
 * (a restart in place keeps member and timeline: still the same, sole, key holder). For every pair of
 * epochs E = (A, tlA) and F = (B, tlB) of different members, with tlA ≤ tlB:
 *   - 'interleaved': the spans intersect (closed intervals). Interval = [max first, min last].
 *   - 'stale-timeline' (tlA < tlB): A acknowledged a write after B's first write on the newer
 *     timeline, even when the spans do not intersect. Interval = [F.first, E.last].
 *   - 'forked-timeline' (tlA = tlB, disjoint spans): two members wrote on the same timeline, which a
 *     promotion never allows (each promotion starts a new one): their histories forked. Interval =
 *     the later epoch's span.
 * Every found overlap is a violation, even one of 0 ms (a single write inside another primary's span).
 * Its duration, overlapMs, counts only the time both members were *actively* acknowledging writes:
 * an epoch's active intervals are its runs of acknowledgements less than activeGapMs apart, and
 * overlapMs is the measure of the intersection of the two epochs' active intervals — so the seconds
 * a stale primary spent frozen (holding writes, acknowledging nothing) are not counted, while the
 * seconds after its thaw in which both acknowledged writes are. spanMs is the evidence interval's
 * length. Totals are measures of unions, so nothing is counted twice.
 *
 * Unavailability of a fault: the longest stretch without any acknowledgement from the injection
 * (which opens the first stretch) until the round's recovery (the stretch that spans the recovery
 * counts whole). When a fault stops writes at once this is injection → first acknowledgement after
 * it; but a write that an orphaned backend acknowledges a few ms after its agent was killed (still
 * under a valid lease) must not hide the failover that follows, so the longest stretch is taken.
 * firstAckMs is the plain figure: injection → acknowledgement of the first write *sent* after it.
 * Recovery: injection → the supplied RecoveryEvent; rejoin: heal → the same event.
 *
 * Lost WAL (async mode): for the lost writes of one round, per epoch, the bytes from the last
 * surviving write of that epoch below the first lost one (or the first lost one itself) to the last
 * lost one — an estimate of the WAL the new primary never received, compared with maxLagBytes.
 */
export function checkHistory(history: History, promises: Promises, options: CheckOptions = {}): CheckReport {
  const activeGapMs = options.activeGapMs ?? 1000;
  const faults = [...history.faults].sort((a, b) => a.roundStartMs - b.roundStartMs);
  const roundOf = (tMs: number): FaultEvent | undefined => {
    let hit: FaultEvent | undefined = faults[0];
    for (const f of faults) if (f.roundStartMs <= tMs) hit = f;
    return hit;
  };

  const finalValues = new Set(history.final.values);
  const sent = new Set<number>([...history.acks.map((a) => a.value), ...history.failures.map((f) => f.value)]);
  const ackedValues = new Set(history.acks.map((a) => a.value));

  const lostAcks = history.acks.filter((a) => !finalValues.has(a.value));
  const lostWrites: LostWrite[] = lostAcks
    .map((a) => ({ value: a.value, member: a.member, timeline: a.timeline, ackAtMs: a.ackAtMs, faultId: roundOf(a.ackAtMs)?.id }))
    .sort((x, y) => x.value - y.value);
  const phantomValues = [...finalValues].filter((v) => !sent.has(v)).sort((a, b) => a - b);
  const indeterminateCommitted = history.failures.filter((f) => finalValues.has(f.value) && !ackedValues.has(f.value)).length;

  const epochs = epochsOf(history.acks);
  const active = activeIntervalsByEpoch(history.acks, activeGapMs);
  const concurrentOf = (os: readonly Pick<Overlap, 'epochs'>[]): [number, number][] =>
    os.flatMap((o) => intersect(active.get(epochKey(o.epochs[0])) ?? [], active.get(epochKey(o.epochs[1])) ?? []));
  const overlaps: Overlap[] = findOverlaps(epochs, history.acks).map((o) => ({ ...o, overlapMs: unionLength(concurrentOf([o])), faultId: roundOf(o.fromMs)?.id }));
  const overlapMs = unionLength(concurrentOf(overlaps));
  const overlapSpanMs = unionLength(overlaps.map((o) => [o.fromMs, o.toMs] as const));

  const ackTimes = history.acks.map((a) => a.ackAtMs).sort((a, b) => a - b);
  const violations: Violation[] = [];
  const rounds: RoundReport[] = faults.map((f) => {
    const lost = lostAcks.filter((a) => roundOf(a.ackAtMs)?.id === f.id);
    const roundOverlaps = overlaps.filter((o) => o.faultId === f.id);
    const lostWal = lostWalBytes(lost, history.acks, finalValues);
    const recovery = history.recoveries.find((r) => r.faultId === f.id);
    const firstAck = f.skipped === undefined ? firstAckSentAfter(history.acks, f.injectedAtMs) : undefined;
    const next = faults[faults.indexOf(f) + 1];
    const windowEndMs = recovery?.allStreamingAtMs ?? next?.roundStartMs ?? Number.POSITIVE_INFINITY;
    const outage = f.skipped === undefined ? longestGap(ackTimes, f.injectedAtMs, windowEndMs) : undefined;
    const round: RoundReport = {
      faultId: f.id,
      fault: f.kind,
      target: f.target,
      injectedAtMs: f.injectedAtMs,
      skipped: f.skipped,
      unavailableMs: outage ?? null,
      firstAckMs: firstAck === undefined ? null : firstAck.ackAtMs - f.injectedAtMs,
      lostWrites: lost.length,
      lostWalBytes: lostWal,
      overlapMs: unionLength(concurrentOf(roundOverlaps)),
      recoveredMs: recovery === undefined ? null : recovery.allStreamingAtMs - f.injectedAtMs,
      rejoinMs: recovery === undefined ? null : recovery.allStreamingAtMs - (f.healedAtMs ?? f.injectedAtMs),
    };
    const where = `round ${f.id} (${f.kind} ${f.target})`;
    if (f.skipped !== undefined) return round;
    if (lost.length > 0 && !promises.lossAllowed) {
      violations.push({ code: 'lost-writes', faultId: f.id, message: `${where}: ${lost.length} acknowledged write(s) missing from the final primary (first: ${lost[0]?.value ?? '?'})` });
    }
    if (lost.length > 0 && promises.lossAllowed && lostWal > promises.maxLagBytes) {
      violations.push({
        code: 'lost-beyond-max-lag',
        faultId: f.id,
        message: `${where}: ${lost.length} lost write(s) span ~${lostWal} bytes of WAL, more than maximum_lag_on_failover (${promises.maxLagBytes})`,
      });
    }
    if (round.unavailableMs === null) violations.push({ code: 'never-available', faultId: f.id, message: `${where}: no write succeeded after the fault` });
    if (round.recoveredMs === null) violations.push({ code: 'not-recovered', faultId: f.id, message: `${where}: the cluster never had every member streaming again` });
    return round;
  });
  for (const o of overlaps) {
    const [e, g] = o.epochs;
    violations.push({
      code: 'overlap',
      faultId: o.faultId,
      message: `${o.kind} overlap: ${e.member} (timeline ${e.timeline}) and ${g.member} (timeline ${g.timeline}) both acknowledged writes${o.certain ? '' : ' (order blurred by round trips)'}, concurrently for ${o.overlapMs.toFixed(0)} ms within a ${o.spanMs.toFixed(0)} ms span (witness value ${o.witness})`,
    });
  }
  if (phantomValues.length > 0) {
    violations.push({ code: 'phantom-writes', faultId: undefined, message: `${phantomValues.length} value(s) in the final table were never written (first: ${phantomValues[0] ?? '?'})` });
  }
  return {
    acked: history.acks.length,
    failed: history.failures.length,
    epochs,
    lostWrites,
    phantomValues,
    indeterminateCommitted,
    overlaps,
    overlapMs,
    overlapSpanMs,
    rounds,
    violations,
    ok: violations.length === 0,
  };
}

/** Groups acknowledgements into epochs (member, timeline), ordered by first acknowledgement. */
export function epochsOf(acks: readonly AckedWrite[]): Epoch[] {
  const by = new Map<string, { member: string; timeline: number; first: AckedWrite; last: AckedWrite; writes: number }>();
  for (const a of acks) {
    const key = `${a.member}\u0000${a.timeline}`;
    const e = by.get(key);
    if (e === undefined) by.set(key, { member: a.member, timeline: a.timeline, first: a, last: a, writes: 1 });
    else {
      e.writes++;
      if (a.ackAtMs < e.first.ackAtMs) e.first = a;
      if (a.ackAtMs >= e.last.ackAtMs) e.last = a;
    }
  }
  return [...by.values()]
    .map((e) => ({
      member: e.member,
      timeline: e.timeline,
      firstAckMs: e.first.ackAtMs,
      lastAckMs: e.last.ackAtMs,
      lastSentMs: e.last.sentAtMs,
      writes: e.writes,
      firstValue: e.first.value,
      lastValue: e.last.value,
    }))
    .sort((a, b) => a.firstAckMs - b.firstAckMs || a.timeline - b.timeline);
}

type FoundOverlap = Omit<Overlap, 'faultId' | 'overlapMs'>;

function findOverlaps(epochs: readonly Epoch[], acks: readonly AckedWrite[]): FoundOverlap[] {
  const out: FoundOverlap[] = [];
  const ref = (e: Epoch): EpochRef => ({ member: e.member, timeline: e.timeline });
  const witnessIn = (e: Epoch, fromMs: number, toMs: number, fallback: number): number =>
    acks.find((a) => a.member === e.member && a.timeline === e.timeline && a.ackAtMs >= fromMs && a.ackAtMs <= toMs)?.value ?? fallback;
  const writesOf = (e: Epoch): AckedWrite[] => acks.filter((a) => a.member === e.member && a.timeline === e.timeline);
  /** Some write of `e` was sent after `other` acknowledged its first write and acknowledged before `untilMs`. */
  const certainlyInside = (e: Epoch, other: Epoch, untilMs: number): boolean => writesOf(e).some((w) => w.sentAtMs >= other.firstAckMs && w.ackAtMs <= untilMs);
  for (let i = 0; i < epochs.length; i++) {
    for (let j = i + 1; j < epochs.length; j++) {
      const x = epochs[i]!;
      const y = epochs[j]!;
      if (x.member === y.member) continue;
      // lo: the epoch on the lower timeline (ties: the earlier one), hi: the other.
      const [lo, hi] = x.timeline < y.timeline || (x.timeline === y.timeline && x.firstAckMs <= y.firstAckMs) ? [x, y] : [y, x];
      const from = Math.max(lo.firstAckMs, hi.firstAckMs);
      const to = Math.min(lo.lastAckMs, hi.lastAckMs);
      if (from <= to) {
        // Witness: a write of one epoch inside the other's span.
        const w = witnessIn(hi, from, to, witnessIn(lo, from, to, hi.firstValue));
        const certain = certainlyInside(hi, lo, lo.lastSentMs) || certainlyInside(lo, hi, hi.lastSentMs);
        out.push({ kind: 'interleaved', epochs: [ref(lo), ref(hi)], fromMs: from, toMs: to, spanMs: to - from, witness: w, certain });
      } else if (lo.timeline < hi.timeline && lo.lastAckMs >= hi.firstAckMs) {
        const certain = certainlyInside(lo, hi, Number.POSITIVE_INFINITY);
        out.push({ kind: 'stale-timeline', epochs: [ref(lo), ref(hi)], fromMs: hi.firstAckMs, toMs: lo.lastAckMs, spanMs: lo.lastAckMs - hi.firstAckMs, witness: lo.lastValue, certain });
      } else if (lo.timeline === hi.timeline) {
        out.push({ kind: 'forked-timeline', epochs: [ref(lo), ref(hi)], fromMs: hi.firstAckMs, toMs: hi.lastAckMs, spanMs: hi.lastAckMs - hi.firstAckMs, witness: hi.firstValue, certain: true });
      }
    }
  }
  return out.sort((a, b) => a.fromMs - b.fromMs);
}

function epochKey(e: EpochRef): string {
  return `${e.member}\u0000${e.timeline}`;
}

/** Per epoch, its runs of acknowledgements less than gapMs apart, as closed intervals. */
function activeIntervalsByEpoch(acks: readonly AckedWrite[], gapMs: number): Map<string, [number, number][]> {
  const times = new Map<string, number[]>();
  for (const a of acks) {
    const k = epochKey(a);
    const xs = times.get(k);
    if (xs === undefined) times.set(k, [a.ackAtMs]);
    else xs.push(a.ackAtMs);
  }
  const out = new Map<string, [number, number][]>();
  for (const [k, xs] of times) {
    xs.sort((a, b) => a - b);
    const runs: [number, number][] = [];
    for (const t of xs) {
      const last = runs[runs.length - 1];
      if (last !== undefined && t - last[1] < gapMs) last[1] = t;
      else runs.push([t, t]);
    }
    out.set(k, runs);
  }
  return out;
}

/** Intersections of two lists of closed intervals (empty ones dropped, points kept). */
function intersect(a: readonly [number, number][], b: readonly [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a0, a1] of a) {
    for (const [b0, b1] of b) {
      const lo = Math.max(a0, b0);
      const hi = Math.min(a1, b1);
      if (lo <= hi) out.push([lo, hi]);
    }
  }
  return out;
}

/** Longest gap in the sorted `times` that starts in [fromMs, toMs), counting fromMs as the first point. */
function longestGap(times: readonly number[], fromMs: number, toMs: number): number | undefined {
  let prev = fromMs;
  let worst: number | undefined;
  for (const t of times) {
    if (t <= fromMs) continue;
    if (prev >= toMs) break;
    worst = Math.max(worst ?? 0, t - prev);
    prev = t;
  }
  return worst;
}

function firstAckSentAfter(acks: readonly AckedWrite[], tMs: number): AckedWrite | undefined {
  let best: AckedWrite | undefined;
  for (const a of acks) if (a.sentAtMs >= tMs && (best === undefined || a.ackAtMs < best.ackAtMs)) best = a;
  return best;
}

/** See checkHistory: an estimate of the WAL span of `lost` per epoch, the largest one. */
function lostWalBytes(lost: readonly AckedWrite[], acks: readonly AckedWrite[], finalValues: ReadonlySet<number>): number {
  let worst = 0;
  const groups = new Map<string, AckedWrite[]>();
  for (const a of lost) {
    if (a.lsn === undefined) continue;
    const k = `${a.member}\u0000${a.timeline}`;
    groups.set(k, [...(groups.get(k) ?? []), a]);
  }
  for (const group of groups.values()) {
    const lsns = group.map((a) => safeLsn(a.lsn)).filter((l): l is bigint => l !== undefined);
    if (lsns.length === 0) continue;
    const minLost = lsns.reduce((m, l) => (l < m ? l : m));
    const maxLost = lsns.reduce((m, l) => (l > m ? l : m));
    const head = group[0]!;
    let base = minLost;
    for (const a of acks) {
      if (a.member !== head.member || a.timeline !== head.timeline || !finalValues.has(a.value)) continue;
      const l = safeLsn(a.lsn);
      if (l !== undefined && l < minLost && (base === minLost || l > base)) base = l;
    }
    const span = Number(maxLost - base);
    if (span > worst) worst = span;
  }
  return worst;
}

function safeLsn(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  try {
    return parseLsn(text);
  } catch {
    return undefined;
  }
}

/** Total length of the union of closed intervals. */
export function unionLength(intervals: readonly (readonly [number, number])[]): number {
  const xs = intervals.filter(([a, b]) => b >= a).map(([a, b]) => [a, b] as [number, number]).sort((p, q) => p[0] - q[0]);
  let total = 0;
  let cur: [number, number] | undefined;
  for (const iv of xs) {
    if (cur === undefined || iv[0] > cur[1]) {
      if (cur !== undefined) total += cur[1] - cur[0];
      cur = [iv[0], iv[1]];
    } else if (iv[1] > cur[1]) cur[1] = iv[1];
  }
  if (cur !== undefined) total += cur[1] - cur[0];
  return total;
}
