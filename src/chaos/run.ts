/**
 * The chaos runner: a writer runs for the whole run while rounds of faults are injected one after
 * another — each after a random delay, so that it lands anywhere in the agents' loop cycle — and
 * each round waits (bounded) until the cluster is whole again. The checker then judges the history.
 */
import { describeError } from '../core/errors.js';
import { checkHistory, type CheckReport, type FaultEvent, type Promises, type RecoveryEvent } from './checker.js';
import { getJson, healthOf, memberStatuses, type ChaosCluster, type ChaosMember, type Healthy } from './cluster.js';
import type { Injected } from './faults.js';
import { mulberry32, type Random } from './random.js';
import { ChaosWriter, prepareTable, queryOnce, readFinalValues, type WriteTarget } from './writer.js';

/** What an injector knows when it injects a fault. */
export interface FaultContext {
  readonly health: Healthy;
  readonly rng: Random;
  /** The cluster's lease TTL (from GET /config). */
  readonly ttlMs: number;
}

/** Injects one fault of `kind` into a healthy cluster. */
export type FaultInjector = (kind: string, ctx: FaultContext) => Promise<Injected>;

export interface ChaosRunOptions {
  readonly cluster: ChaosCluster;
  readonly faults: readonly string[];
  readonly inject: FaultInjector;
  readonly rounds: number;
  readonly seed: number;
  readonly log?: (line: string) => void;
  /** Bound on waiting for a healthy cluster before a round and for recovery after it. */
  readonly recoveryTimeoutMs?: number;
  /** Upper bound of the random delay before a fault; default: one TTL (the lease's whole cycle). */
  readonly maxDelayMs?: number;
  readonly connection?: 'persistent' | 'fresh';
  /** Probe every other member for a second writable primary (default true). */
  readonly probe?: boolean;
  /**
   * Where the main writer lane sends writes: 'router' (the cluster's read-write router port),
   * 'primary' (whichever member answers GET /primary with 200), or 'auto' (the router when there is
   * one). Default 'auto'.
   */
  readonly via?: 'auto' | 'router' | 'primary';
}

/** One round as printed and as JSON (the first six names are the issue's contract). */
export interface ChaosRound {
  readonly fault: string;
  readonly target: string;
  readonly unavailableMs: number | null;
  readonly firstAckMs: number | null;
  readonly lostWrites: number;
  readonly overlapMs: number;
  readonly recoveredMs: number | null;
  readonly rejoinMs: number | null;
  readonly lostWalBytes: number;
  readonly delayMs: number;
  readonly holdMs: number;
  readonly skipped?: string;
}

export interface Stat {
  readonly median: number | null;
  readonly max: number | null;
}

export interface ChaosReport {
  readonly seed: number;
  readonly cluster: string;
  readonly mode: 'async' | 'synchronous' | 'synchronous-strict';
  /** How the main writer lane reached the primary. */
  readonly via: 'router' | 'primary';
  readonly promises: Promises;
  readonly rounds: readonly ChaosRound[];
  readonly summary: {
    readonly rounds: number;
    readonly injected: number;
    readonly skipped: number;
    readonly acked: number;
    readonly failed: number;
    readonly lostWrites: number;
    readonly lostWalBytesMax: number;
    /** Time two members acknowledged writes concurrently (see checkHistory). */
    readonly overlapMs: number;
    /** Length of the overlaps' evidence intervals (includes a frozen stale primary's silence). */
    readonly overlapSpanMs: number;
    readonly overlaps: number;
    readonly unavailableMs: Stat;
    readonly recoveredMs: Stat;
    readonly rejoinMs: Stat;
    readonly violations: readonly string[];
    readonly notes: readonly string[];
    readonly ok: boolean;
  };
  /** The checker's full verdict (epochs, lost values, overlaps), for debugging a failed run. */
  readonly check: CheckReport;
}

interface DynamicConfigView {
  ttl?: number;
  loop_wait?: number;
  maximum_lag_on_failover?: number;
  synchronous_mode?: string | boolean;
  synchronous_mode_strict?: boolean;
}

const POLL_MS = 100;

/** Runs the rounds and returns the report; throws only when the run cannot start at all. */
export async function runChaos(opts: ChaosRunOptions): Promise<ChaosReport> {
  const log = opts.log ?? (() => undefined);
  const now = (): number => performance.now();
  const rng = mulberry32(opts.seed);
  const recoveryTimeoutMs = opts.recoveryTimeoutMs ?? 180_000;
  const cluster = opts.cluster;
  const notes: string[] = [];

  let members = await cluster.members();
  const first = await waitHealthy(cluster, recoveryTimeoutMs, log);
  members = first.members;
  const config = await readConfig(members);
  const ttlMs = (config.ttl ?? 2) * 1000;
  const syncMode = config.synchronous_mode === true || config.synchronous_mode === 'on' || config.synchronous_mode === 'quorum';
  const mode: ChaosReport['mode'] = !syncMode ? 'async' : config.synchronous_mode_strict === true ? 'synchronous-strict' : 'synchronous';
  const promises: Promises = { lossAllowed: !syncMode, maxLagBytes: config.maximum_lag_on_failover ?? 1024 * 1024 };

  const addr = (m: ChaosMember) => ({ host: m.host, port: m.port, user: cluster.user, password: cluster.password });
  if (syncMode) {
    const ssn = await queryOnce<{ s: string }>(addr(first.healthy.leader), "SELECT current_setting('synchronous_standby_names') AS s").catch(() => []);
    if ((ssn[0]?.s ?? '') === '') notes.push(`synchronous_mode is ${String(config.synchronous_mode)} in the cluster config, but the primary runs with synchronous_standby_names empty: acknowledged writes are not waiting for a standby`);
  }
  const firstValue = await prepareTable(addr(first.healthy.leader));

  const memberOf = (host: string, port: number): string | undefined => members.find((m) => m.port === port && (m.host === host || host === '127.0.0.1' || host === '::1'))?.name;
  const router = opts.via === 'primary' ? undefined : await cluster.routerAddress?.();
  if (opts.via === 'router' && router === undefined) throw new Error('--via router: the cluster has no router');
  const via = router === undefined ? 'primary' : 'router';
  // The first member to answer /primary with 200 wins: a frozen member's timeout must not delay it.
  const primaryProvider = (timeoutMs: number): Promise<WriteTarget | undefined> => firstPrimary(members, timeoutMs);
  const provider = router === undefined ? primaryProvider : async (): Promise<WriteTarget> => ({ host: router.host, port: router.port });
  const writer = new ChaosWriter(
    {
      target: provider,
      ...(opts.probe === false ? {} : { probeTargets: () => members.map((m) => ({ host: m.host, port: m.port, member: m.name })) }),
      memberOf,
      user: cluster.user,
      password: cluster.password,
      connection: opts.connection ?? 'persistent',
    },
    firstValue,
  );
  writer.start();
  log(`writer started (values from ${firstValue}, via ${via === 'router' ? `the router ${router?.host ?? ''}:${router?.port ?? ''}` : 'the member answering /primary'}); mode ${mode}, ttl ${ttlMs / 1000} s, maximum_lag_on_failover ${promises.maxLagBytes} bytes`);

  const faults: FaultEvent[] = [];
  const recoveries: RecoveryEvent[] = [];
  const extra: { delayMs: number; holdMs: number }[] = [];
  const order = planFaults(opts.faults, opts.rounds, rng);
  let final: { primary: string; values: number[] } = { primary: '?', values: [] };
  try {
    for (let i = 0; i < order.length; i++) {
      const kind = order[i] ?? '';
      const id = String(i + 1);
      const roundStartMs = now();
      let health: Healthy;
      try {
        const h = await waitHealthy(cluster, recoveryTimeoutMs, log);
        members = h.members;
        health = h.healthy;
        await waitFor(() => writer.acks.some((a) => a.sentAtMs >= roundStartMs), recoveryTimeoutMs);
      } catch (e) {
        notes.push(`round ${id}: stopped before injecting ${kind}: ${describeError(e)}`);
        break;
      }
      const delayMs = Math.round(rng.between(0, opts.maxDelayMs ?? ttlMs));
      await sleep(delayMs);
      const injectedAtMs = now();
      let injected: Injected;
      try {
        injected = await opts.inject(kind, { health, rng, ttlMs });
      } catch (e) {
        notes.push(`round ${id}: could not inject ${kind}: ${describeError(e)}`);
        faults.push({ id, kind, target: '?', roundStartMs, injectedAtMs, skipped: describeError(e) });
        extra.push({ delayMs, holdMs: 0 });
        continue;
      }
      log(`round ${id}/${order.length}: ${kind} ${injected.target}${injected.skipped !== undefined ? ` — skipped: ${injected.skipped}` : ''} (after ${delayMs} ms${injected.holdMs > 0 ? `, held ${injected.holdMs} ms` : ''})`);
      if (injected.skipped !== undefined) {
        faults.push({ id, kind, target: injected.target, roundStartMs, injectedAtMs, skipped: injected.skipped });
        extra.push({ delayMs, holdMs: 0 });
        continue;
      }
      let healedAtMs = injectedAtMs;
      if (injected.holdMs > 0) {
        await sleep(injected.holdMs);
        await injected.heal();
        healedAtMs = now();
      }
      faults.push({ id, kind, target: injected.target, roundStartMs, injectedAtMs, healedAtMs });
      extra.push({ delayMs, holdMs: injected.holdMs });
      const recoveredAt = await waitRecovered(cluster, injected, recoveryTimeoutMs);
      if (recoveredAt === undefined) {
        notes.push(`round ${id}: ${kind} ${injected.target}: the cluster did not recover within ${recoveryTimeoutMs / 1000} s; stopping the run`);
        break;
      }
      recoveries.push({ faultId: id, allStreamingAtMs: recoveredAt.atMs });
      members = recoveredAt.members;
      await waitFor(() => writer.acks.some((a) => a.sentAtMs >= injectedAtMs), recoveryTimeoutMs).catch(() => undefined);
      log(`round ${id}: recovered after ${((recoveredAt.atMs - injectedAtMs) / 1000).toFixed(1)} s`);
    }
  } finally {
    // Let the writer land a few more writes on the final primary, then read the table from it.
    const settleFrom = now();
    await waitFor(() => writer.acks.filter((a) => a.sentAtMs >= settleFrom).length >= 10, 10_000).catch(() => undefined);
    await writer.stop();
  }
  try {
    const h = await waitHealthy(cluster, recoveryTimeoutMs, log);
    final = { primary: h.healthy.leader.name, values: await readFinalValues(addr(h.healthy.leader), firstValue) };
  } catch (e) {
    notes.push(`could not read the final table: ${describeError(e)}`);
  }
  const check = checkHistory({ acks: writer.acks, failures: writer.failures, faults, recoveries, final }, promises);
  const rounds: ChaosRound[] = check.rounds.map((r, i) => ({
    fault: r.fault,
    target: r.target,
    unavailableMs: roundMs(r.unavailableMs),
    firstAckMs: roundMs(r.firstAckMs),
    lostWrites: r.lostWrites,
    overlapMs: Math.round(r.overlapMs),
    recoveredMs: roundMs(r.recoveredMs),
    rejoinMs: roundMs(r.rejoinMs),
    lostWalBytes: r.lostWalBytes,
    delayMs: extra[i]?.delayMs ?? 0,
    holdMs: extra[i]?.holdMs ?? 0,
    ...(r.skipped === undefined ? {} : { skipped: r.skipped }),
  }));
  const done = rounds.filter((r) => r.skipped === undefined);
  const violations = check.violations.map((v) => v.message);
  if (final.values.length === 0 && writer.acks.length > 0) violations.push('the final table could not be read: lost writes cannot be ruled out');
  if (rounds.length < order.length) violations.push(`only ${rounds.length} of ${order.length} rounds ran`);
  return {
    seed: opts.seed,
    cluster: cluster.name,
    mode,
    via,
    promises,
    rounds,
    summary: {
      rounds: order.length,
      injected: done.length,
      skipped: rounds.length - done.length,
      acked: check.acked,
      failed: check.failed,
      lostWrites: check.lostWrites.length,
      lostWalBytesMax: Math.max(0, ...rounds.map((r) => r.lostWalBytes)),
      overlapMs: Math.round(check.overlapMs),
      overlapSpanMs: Math.round(check.overlapSpanMs),
      overlaps: check.overlaps.length,
      unavailableMs: stat(done.map((r) => r.unavailableMs)),
      recoveredMs: stat(done.map((r) => r.recoveredMs)),
      rejoinMs: stat(done.map((r) => r.rejoinMs)),
      violations,
      notes,
      ok: violations.length === 0,
    },
    check,
  };
}

/** The first member whose GET /primary answers 200 within timeoutMs (without waiting for the others). */
export function firstPrimary(members: readonly ChaosMember[], timeoutMs: number): Promise<WriteTarget | undefined> {
  return new Promise((resolve) => {
    let pending = members.length;
    if (pending === 0) resolve(undefined);
    for (const m of members) {
      void getJson<unknown>(m.apiUrl, '/primary', timeoutMs).then((r) => {
        if (r?.status === 200) resolve({ host: m.host, port: m.port, member: m.name });
        if (--pending === 0) resolve(undefined);
      });
    }
  });
}

/** Every fault once (shuffled) for coverage, then random picks; all from the seeded source. */
export function planFaults(faults: readonly string[], rounds: number, rng: Random): string[] {
  const out: string[] = [];
  while (out.length < rounds) {
    if (out.length < faults.length) out.push(...rng.shuffle(faults).slice(0, rounds - out.length));
    else out.push(rng.pick(faults));
  }
  return out;
}

async function readConfig(members: readonly ChaosMember[]): Promise<DynamicConfigView> {
  for (const m of members) {
    const r = await getJson<DynamicConfigView>(m.apiUrl, '/config', 2000);
    if (r?.status === 200) return r.body;
  }
  return {};
}

/** Waits (bounded) until the cluster is healthy; returns its shape and the member list it saw. */
export async function waitHealthy(cluster: ChaosCluster, timeoutMs: number, log: (s: string) => void = () => undefined): Promise<{ healthy: Healthy; members: readonly ChaosMember[] }> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  for (;;) {
    const members = await cluster.members();
    const h = healthOf(await memberStatuses(members));
    if (typeof h !== 'string') return { healthy: h, members };
    if (h !== last) log(`waiting for a healthy cluster: ${h}`);
    last = h;
    if (performance.now() > deadline) throw new Error(`not healthy within ${timeoutMs / 1000} s: ${last}`);
    await sleep(POLL_MS * 2);
  }
}

async function waitRecovered(cluster: ChaosCluster, injected: Injected, timeoutMs: number): Promise<{ atMs: number; members: readonly ChaosMember[] } | undefined> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const members = await cluster.members();
    const statuses = await memberStatuses(members);
    const at = performance.now();
    if (typeof healthOf(statuses) !== 'string' && (await injected.isCleared())) return { atMs: at, members };
    await sleep(POLL_MS);
  }
  return undefined;
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}

function stat(values: readonly (number | null)[]): Stat {
  const xs = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (xs.length === 0) return { median: null, max: null };
  const mid = (xs.length - 1) / 2;
  const median = ((xs[Math.floor(mid)] ?? 0) + (xs[Math.ceil(mid)] ?? 0)) / 2;
  return { median: Math.round(median), max: xs[xs.length - 1] ?? null };
}

function roundMs(v: number | null): number | null {
  return v === null ? null : Math.round(v);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
