/**
 * Failover time after the leader freezes (agent + every PostgreSQL process SIGSTOPped), split into
 * detection (the leader key leaves etcd) and promotion + first write; then rejoin time of the old
 * leader after SIGCONT, watching it for writes it should no longer accept.
 *
 *   npm run build && node --import tsx bench/failover.ts [--runs 10] [--dir /tmp/warden-bench-failover]
 *
 * Per run:
 *   1. wait until healthy (one running leader, two streaming replicas on its timeline; bounded);
 *   2. wait a random delay, uniform in [0, max-delay) ms, so that the fault lands anywhere in the
 *      agents' loop cycle and anywhere in the lease's life;
 *   3. t0, then SIGSTOP the leader's agent, its postmaster and every child (tree re-read until stable);
 *   4. every 20 ms, on each other member, a fresh connection (connect timeout 1 s) tries
 *      INSERT INTO bench_failover(at) VALUES (now()); t1 = first success: failover = t1 - t0.
 *      An etcd watch on the leader key records when it was deleted (detection) and re-created;
 *   5. t2, SIGCONT everything frozen; t3 = the old leader's /patroni says replica, streaming, on the
 *      new timeline: rejoin = t3 - t2. Meanwhile the old leader's port is probed every 50 ms
 *      (fresh connection: SELECT pg_is_in_recovery(), then the same INSERT) and every accepted
 *      INSERT is counted as a second-writable-primary moment (the new leader exists since t1).
 *
 * With --stale-sessions 1, two sessions are opened to the leader before the fault and stand for
 * clients that were already connected: one sends an INSERT while the leader is frozen (in flight
 * across the failover), the other sends one right after SIGCONT. Whether each committed on the old
 * leader, and whether the row survived on the new leader after the rejoin, is reported apart from
 * the fresh-connection probes above (off by default: it is not part of the issue's measurement,
 * and a write that commits on the old leader forces a rewind, which changes the rejoin figure).
 *
 * Reference in the same run: the detection part (bounded below by the lease TTL) and the ratio
 * failover / ttl.
 */
import { etcdClientFromState } from '../src/controller/state-file.js';
import type { EtcdClient } from '../src/dcs/etcd-client.js';
import {
  closeSession,
  clusterUp,
  fmt,
  Freezer,
  getJson,
  logger,
  machine,
  machineLine,
  now,
  openSession,
  parseOptions,
  patroni,
  postmasterPid,
  processTree,
  queryOnce,
  readState,
  runBench,
  saveLogs,
  sleep,
  summarize,
  superuserPassword,
  table,
  waitHealthy,
  type PgTarget,
  type StateMember,
  type Summary,
} from './support.js';

const opts = parseOptions({ runs: 10, dir: '/tmp/warden-bench-failover', 'max-delay': 2000, 'rejoin-timeout': 60, 'failover-timeout': 60, 'stale-sessions': 0 });
const log = logger('failover');
const INSERT = 'INSERT INTO bench_failover(at) VALUES (now())';
const WRITE_POLL_MS = 20;
const PROBE_OLD_MS = 50;

interface RunResult {
  readonly run: number;
  readonly delayMs: number;
  readonly oldLeader: string;
  readonly newLeader: string | undefined;
  readonly failoverMs: number;
  /** t0 → the leader key's DELETE event on an etcd watch. */
  readonly detectionMs: number;
  /** t0 → a new leader key (PUT with another member's name). */
  readonly electedMs: number;
  readonly rejoinMs: number;
  /** SIGCONT → the whole cluster healthy again (both replicas streaming on the new timeline, SQL-checked). */
  readonly healthyMs: number;
  readonly frozen: number;
  readonly writeAttempts: number;
  readonly oldProbes: number;
  /** Probes of the old leader after SIGCONT in which the INSERT committed. */
  readonly oldWritesAccepted: number;
  /** Probes in which the old leader answered pg_is_in_recovery() = false. */
  readonly oldNotInRecovery: number;
  /** First / last accepted write on the old leader, ms after SIGCONT. */
  readonly oldWritesWindow: readonly [number, number] | undefined;
  readonly oldTimeline: number;
  readonly newTimeline: number | undefined;
  readonly oldAnswers: readonly (readonly [string, number])[];
  /** --stale-sessions: what happened to the INSERT of a session opened before the fault. */
  readonly stale: readonly StaleOutcome[];
  readonly note: string;
}

interface StaleOutcome {
  readonly session: 'in-flight' | 'after-sigcont';
  /** committed-kept: on the new leader after the rejoin; committed-lost: acknowledged by the old leader, absent on the new one. */
  readonly result: 'committed-kept' | 'committed-lost' | 'error' | 'no-answer';
  readonly detail: string;
  /** When the answer came, ms after SIGCONT. */
  readonly answeredMs: number | undefined;
}

/** A pending query on an open session, settled into an outcome with its arrival time. */
function settle(p: Promise<unknown>): Promise<{ ok: boolean; detail: string; at: number }> {
  return p.then(
    () => ({ ok: true, detail: 'committed', at: now() }),
    (e: unknown) => {
      const err = e as Error & { code?: string };
      return { ok: false, detail: `${err.code ?? 'no code'}: ${err.message}`, at: now() };
    },
  );
}

/** Records etcd events on the leader key, timestamped on arrival. */
class LeaderWatch {
  readonly events: { type: 'put' | 'delete'; value: string; at: number }[] = [];
  private readonly abort = new AbortController();
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly etcd: EtcdClient, private readonly key: string) {}

  /** Starts watching from the revision after the current one; returns the current value. */
  async start(): Promise<string | undefined> {
    const snap = await this.etcd.range(this.key, { timeoutMs: 2000 });
    const current = snap.kvs.find((kv) => kv.key === this.key)?.value;
    this.done = this.etcd
      .watch(this.key, snap.revision + 1, (evs) => {
        const at = now();
        for (const e of evs) if (e.kv.key === this.key) this.events.push({ type: e.type, value: e.kv.value, at });
      }, this.abort.signal)
      .catch((e: unknown) => log(`leader-key watch ended: ${String(e)}`));
    return current;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

async function oneRun(run: number, ctx: { dir: string; password: string; etcd: EtcdClient; leaderKey: string; freezer: Freezer }): Promise<RunResult> {
  const state = await readState(ctx.dir);
  const healthy = await waitHealthy(state, 90_000, { password: ctx.password });
  const leader = healthy.leader;
  const others = healthy.replicas;
  const agentPid = state.members.find((m) => m.name === leader.name)?.agentPid ?? undefined;
  const pm = await postmasterPid(leader.dataDir);
  if (agentPid === undefined || agentPid === null || pm === undefined) throw new Error(`run ${run}: no agent PID or postmaster PID for ${leader.name}`);
  const target = (m: StateMember): PgTarget => ({ host: m.host, port: m.port, password: ctx.password });

  const staleOn = opts['stale-sessions'] > 0;
  const inflight = staleOn ? await openSession(target(leader)) : undefined;
  const afterCont = staleOn ? await openSession(target(leader)) : undefined;
  const tagOf = (what: string): string => `run${run}-${what}-${Math.random().toString(36).slice(2, 8)}`;
  const tags = { inflight: tagOf('in-flight'), after: tagOf('after-sigcont') };
  const insertTag = (tag: string): string => `INSERT INTO bench_failover(at, tag) VALUES (now(), '${tag}')`;
  const watch = new LeaderWatch(ctx.etcd, ctx.leaderKey);
  const keyBefore = await watch.start();
  const delayMs = Math.random() * opts['max-delay'];
  await sleep(delayMs);
  const known = [...(await processTree(agentPid)), ...(await processTree(pm))];

  // ---- the fault
  const t0 = now();
  const frozen = [...(await ctx.freezer.freeze([agentPid, pm], known))];
  const inflightP = inflight === undefined ? undefined : settle(inflight.query(insertTag(tags.inflight)));
  log(`run ${run}: froze ${leader.name} (agent ${agentPid}, postmaster ${pm}, ${frozen.length} processes) after ${delayMs.toFixed(0)} ms`);

  // ---- failover: first committed INSERT on another member
  let t1: number | undefined;
  let newLeader: StateMember | undefined;
  let attempts = 0;
  const errors = new Map<string, number>();
  const failDeadline = t0 + opts['failover-timeout'] * 1000;
  await Promise.all(
    others.map(async (m) => {
      while (t1 === undefined && now() < failDeadline) {
        const started = now();
        attempts++;
        const r = await queryOnce(target(m), INSERT, { connectTimeoutMs: 1000, queryTimeoutMs: 2000 });
        if (r.ok) {
          if (t1 === undefined) {
            t1 = now();
            newLeader = m;
          }
          return;
        }
        const key = `${m.name}: ${r.error.replace(/\d+/g, 'N')}`;
        errors.set(key, (errors.get(key) ?? 0) + 1);
        await sleep(Math.max(0, WRITE_POLL_MS - (now() - started)));
      }
    }),
  );
  const failoverMs = t1 === undefined ? Number.NaN : t1 - t0;
  if (t1 === undefined) log(`run ${run}: NO write accepted within ${opts['failover-timeout']} s; errors: ${JSON.stringify([...errors])}`);
  else log(`run ${run}: first write on ${newLeader?.name} after ${failoverMs.toFixed(0)} ms (${attempts} attempts)`);

  let newTimeline: number | undefined;
  if (newLeader !== undefined) {
    const until = now() + 10_000;
    while (now() < until) {
      const p = await patroni(newLeader.apiUrl, 1000);
      if (p?.role === 'primary' && p.timeline !== undefined && p.timeline > healthy.timeline) {
        newTimeline = p.timeline;
        break;
      }
      await sleep(50);
    }
  }

  // ---- rejoin after SIGCONT, probing the old leader for writes all along
  const t2 = now();
  ctx.freezer.thaw();
  const afterP = afterCont === undefined ? undefined : settle(afterCont.query(insertTag(tags.after)));
  let t3: number | undefined;
  let oldProbes = 0;
  let oldWrites = 0;
  let notInRecovery = 0;
  let firstWrite: number | undefined;
  let lastWrite: number | undefined;
  const rejoinDeadline = t2 + opts['rejoin-timeout'] * 1000;
  const stillWaiting = (): boolean => t3 === undefined && now() < rejoinDeadline;
  let lastOldState = '';
  /** What the old leader answered to the INSERT, as runs of the same answer: [answer, ms after SIGCONT of its first probe]. */
  const probeKinds: [string, number][] = [];
  await Promise.all([
    (async () => {
      while (stillWaiting()) {
        const p = await patroni(leader.apiUrl, 1000);
        if (p !== undefined) lastOldState = `${p.role}/${p.warden?.state ?? p.state} tl ${p.timeline ?? '?'} (${p.warden?.reason?.code ?? ''})`;
        if (p?.role === 'replica' && p.warden?.state === 'streaming' && newTimeline !== undefined && p.timeline === newTimeline) {
          t3 = now();
          return;
        }
        await sleep(100);
      }
    })(),
    (async () => {
      while (stillWaiting()) {
        const started = now();
        oldProbes++;
        const ro = await queryOnce(target(leader), 'SELECT pg_is_in_recovery() AS r', { connectTimeoutMs: 1000, queryTimeoutMs: 1000 });
        if (ro.ok && ro.rows[0]?.['r'] === false) notInRecovery++;
        const w = await queryOnce(target(leader), INSERT, { connectTimeoutMs: 1000, queryTimeoutMs: 1000 });
        const kind = w.ok ? 'INSERT committed' : `${w.code ?? 'no code'}: ${w.error.replace(/\d+/g, 'N').slice(0, 60)}`;
        if (probeKinds.at(-1)?.[0] !== kind) probeKinds.push([kind, Math.round(now() - t2)]);
        if (w.ok) {
          oldWrites++;
          const at = now() - t2;
          firstWrite ??= at;
          lastWrite = at;
        }
        await sleep(Math.max(0, PROBE_OLD_MS - (now() - started)));
      }
    })(),
  ]);
  const rejoinMs = t3 === undefined ? Number.NaN : t3 - t2;
  // The whole cluster again: leader + both replicas streaming on the new timeline (SQL-checked).
  let healthyMs = Number.NaN;
  let unhealthy = '';
  try {
    healthyMs = (await waitHealthy(state, 90_000, { password: ctx.password })).since - t2;
  } catch (e) {
    unhealthy = e instanceof Error ? e.message : String(e);
  }
  await watch.stop();
  const stale: StaleOutcome[] = [];
  if (inflightP !== undefined && afterP !== undefined && inflight !== undefined && afterCont !== undefined) {
    const noAnswer = { ok: false, detail: 'no answer within 5 s of the rejoin', at: Number.NaN };
    const answers = await Promise.all([inflightP, afterP].map((p) => Promise.race([p, sleep(5000).then(() => noAnswer)])));
    await Promise.all([closeSession(inflight), closeSession(afterCont)]);
    let present = new Set<string>();
    if (newLeader !== undefined) {
      const q = await queryOnce(target(newLeader), `SELECT tag FROM bench_failover WHERE tag IN ('${tags.inflight}', '${tags.after}')`, { queryTimeoutMs: 5000 });
      if (q.ok) present = new Set(q.rows.map((r) => String(r['tag'])));
    }
    (['in-flight', 'after-sigcont'] as const).forEach((session, i) => {
      const a = answers[i] ?? noAnswer;
      const tag = session === 'in-flight' ? tags.inflight : tags.after;
      const result = a === noAnswer ? 'no-answer' : !a.ok ? 'error' : present.has(tag) ? 'committed-kept' : 'committed-lost';
      stale.push({ session, result, detail: a.detail, answeredMs: Number.isFinite(a.at) ? a.at - t2 : undefined });
    });
    log(`run ${run}: stale sessions: ${stale.map((o) => `${o.session} ${o.result} @${fmt(o.answeredMs, 0)}ms (${o.detail})`).join('; ')}`);
  }
  const del = watch.events.find((e) => e.type === 'delete' && e.at >= t0);
  const put = watch.events.find((e) => e.type === 'put' && e.at >= t0 && e.value !== keyBefore);
  const notes: string[] = [];
  if (t3 === undefined) notes.push(`no rejoin within ${opts['rejoin-timeout']} s (last: ${lastOldState})`);
  if (unhealthy !== '') notes.push(`after SIGCONT: ${unhealthy}`);
  if (oldWrites > 0) notes.push(`OLD LEADER ACCEPTED ${oldWrites} WRITE(S) ${fmt(firstWrite, 0)}–${fmt(lastWrite, 0)} ms after SIGCONT`);
  if (del === undefined) notes.push('no DELETE of the leader key seen');
  log(`run ${run}: rejoin ${fmt(rejoinMs / 1000)} s, ${oldProbes} probes of the old leader, ${oldWrites} accepted writes; answers: ${probeKinds.map(([k, at]) => `@${at}ms ${k}`).join(' | ')}${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`);
  return {
    run,
    delayMs,
    oldLeader: leader.name,
    newLeader: newLeader?.name,
    failoverMs,
    detectionMs: del === undefined ? Number.NaN : del.at - t0,
    electedMs: put === undefined ? Number.NaN : put.at - t0,
    rejoinMs,
    healthyMs,
    frozen: frozen.length,
    writeAttempts: attempts,
    oldProbes,
    oldWritesAccepted: oldWrites,
    oldNotInRecovery: notInRecovery,
    oldWritesWindow: firstWrite === undefined || lastWrite === undefined ? undefined : [firstWrite, lastWrite],
    oldTimeline: healthy.timeline,
    newTimeline,
    oldAnswers: probeKinds,
    stale,
    note: notes.join('; '),
  };
}

const s = (ms: number): string => fmt(ms / 1000);
const sumLine = (label: string, x: Summary, unit = 's', div = 1000): string[] => [
  label,
  String(x.n),
  fmt(x.median / div),
  fmt(x.p10 / div),
  fmt(x.p90 / div),
  fmt(x.min / div),
  fmt(x.max / div),
  unit,
];

await runBench(async () => {
  const machineAtStart = machine();
  const { dir } = opts;
  const started = Date.now();
  const { state } = await clusterUp(dir, log);
  const password = await superuserPassword(dir);
  const healthy = await waitHealthy(state, 90_000, { password });
  const cfg = await getJson<{ ttl?: number; loop_wait?: number; retry_timeout?: number }>(healthy.leader.apiUrl, '/config', 2000);
  const ttl = cfg?.body.ttl ?? Number.NaN;
  log(`timings from GET /config: ttl ${ttl} s, loop_wait ${cfg?.body.loop_wait} s, retry_timeout ${cfg?.body.retry_timeout} s`);
  const created = await queryOnce(
    { host: healthy.leader.host, port: healthy.leader.port, password },
    'CREATE TABLE IF NOT EXISTS bench_failover(id bigserial PRIMARY KEY, at timestamptz NOT NULL, tag text)',
    { queryTimeoutMs: 10_000 },
  );
  if (!created.ok) throw new Error(`CREATE TABLE failed: ${created.error}`);
  const etcd = etcdClientFromState(state, 2000);
  const freezer = new Freezer();
  const results: RunResult[] = [];
  let aborted: string | undefined;
  try {
    for (let run = 1; run <= opts.runs; run++) {
      try {
        const r = await oneRun(run, { dir, password, etcd, leaderKey: `/warden/${state.cluster}/leader`, freezer });
        results.push(r);
        if (!Number.isFinite(r.healthyMs)) {
          aborted = `run ${run}: the cluster did not become healthy again after SIGCONT (see the note)`;
          break;
        }
      } catch (e) {
        freezer.thaw();
        log(`run ${run} aborted: ${e instanceof Error ? e.message : String(e)}`);
        aborted = `run ${run}: ${e instanceof Error ? e.message : String(e)}`;
        break;
      }
    }
  } finally {
    freezer.thaw();
    etcd.close();
  }
  const history = await getJson<unknown[]>(state.members[0]?.apiUrl ?? '', '/history', 2000);
  const troubled = aborted !== undefined || results.some((r) => r.note !== '');
  const savedLogs = troubled ? await saveLogs(dir, `${dir}-logs-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
  if (savedLogs !== undefined) log(`logs of this cluster saved to ${savedLogs}`);

  // ---- report
  process.stdout.write(`\nFailover after SIGSTOP of the leader (agent + PostgreSQL), ${results.length}/${opts.runs} runs, ttl ${ttl} s\n\n`);
  process.stdout.write(
    `${table(
      ['run', 'delay ms', 'old → new', 'detect s', 'elected s', 'failover s', 'promo+write s', 'rejoin s', 'healthy s', 'old writes', 'TL', 'note'],
      results.map((r) => [
        String(r.run),
        r.delayMs.toFixed(0),
        `${r.oldLeader} → ${r.newLeader ?? '?'}`,
        s(r.detectionMs),
        s(r.electedMs),
        s(r.failoverMs),
        s(r.failoverMs - r.detectionMs),
        s(r.rejoinMs),
        s(r.healthyMs),
        `${r.oldWritesAccepted}/${r.oldProbes}`,
        `${r.oldTimeline}→${r.newTimeline ?? '?'}`,
        r.note,
      ]),
    )}\n\n`,
  );
  const failover = summarize(results.map((r) => r.failoverMs));
  const detection = summarize(results.map((r) => r.detectionMs));
  const elected = summarize(results.map((r) => r.electedMs));
  const promotion = summarize(results.map((r) => r.failoverMs - r.detectionMs));
  const rejoin = summarize(results.map((r) => r.rejoinMs));
  const healthyAgain = summarize(results.map((r) => r.healthyMs));
  const ratio = summarize(results.map((r) => r.failoverMs / (ttl * 1000)));
  process.stdout.write(
    `${table(
      ['figure', 'n', 'median', 'p10', 'p90', 'min', 'max', 'unit'],
      [
        sumLine('failover (t0 → first committed write)', failover),
        sumLine('  detection (t0 → leader key deleted)', detection),
        sumLine('  elected (t0 → new leader key)', elected),
        sumLine('  promotion + first write (failover − detection)', promotion),
        sumLine('rejoin (SIGCONT → old leader streaming on new TL)', rejoin),
        sumLine('cluster healthy (SIGCONT → 2 replicas streaming, SQL-checked)', healthyAgain),
        sumLine('failover / ttl', ratio, 'ratio', 1),
      ],
    )}\n\n`,
  );
  const secondWritable = results.reduce((n, r) => n + r.oldWritesAccepted, 0);
  const notInRecovery = results.reduce((n, r) => n + r.oldNotInRecovery, 0);
  const probes = results.reduce((n, r) => n + r.oldProbes, 0);
  const staleCommitted = results.flatMap((r) => r.stale).filter((o) => o.result === 'committed-kept' || o.result === 'committed-lost').length;
  const failedFailovers = results.filter((r) => !Number.isFinite(r.failoverMs)).length;
  const failedRejoins = results.filter((r) => !Number.isFinite(r.rejoinMs)).length;
  process.stdout.write(`second-writable-primary moments: ${secondWritable} accepted INSERTs on the old leader in ${probes} probes after SIGCONT (runs affected: ${results.filter((r) => r.oldWritesAccepted > 0).length}); pg_is_in_recovery() = false answered ${notInRecovery} times\n`);
  if (opts['stale-sessions'] > 0) {
    const all = results.flatMap((r) => r.stale);
    for (const session of ['in-flight', 'after-sigcont'] as const) {
      const xs = all.filter((o) => o.session === session);
      const count = (k: StaleOutcome['result']): number => xs.filter((o) => o.result === k).length;
      process.stdout.write(
        `stale session, INSERT ${session === 'in-flight' ? 'sent while the leader was frozen' : 'sent right after SIGCONT'}: committed on the old leader ${count('committed-kept') + count('committed-lost')}/${xs.length} (acknowledged then LOST after rejoin: ${count('committed-lost')}), refused ${count('error')}, no answer ${count('no-answer')}\n`,
      );
    }
  }
  process.stdout.write(`failovers without a write within ${opts['failover-timeout']} s: ${failedFailovers}; rejoins not done within ${opts['rejoin-timeout']} s: ${failedRejoins}\n`);
  if (aborted !== undefined) process.stdout.write(`ABORTED: ${aborted}\n`);
  if (savedLogs !== undefined) process.stdout.write(`agent and PostgreSQL logs saved to ${savedLogs}\n`);
  process.stdout.write(`timeline history entries (GET /history): ${Array.isArray(history?.body) ? history.body.length : '?'}\n`);
  process.stdout.write(`targets: median failover ≤ 3 s → ${failover.median <= 3000 ? 'met' : 'NOT met'}; rejoin ≤ 10 s → ${rejoin.max <= 10_000 ? 'met (max)' : rejoin.median <= 10_000 ? 'met (median), not for every run' : 'NOT met'}; zero second writable primaries → ${secondWritable === 0 ? 'met' : 'NOT met'} (fresh-connection probes)${staleCommitted > 0 ? `; but ${staleCommitted} stale-session INSERT(s) committed on the old leader after the failover` : ''}\n`);
  process.stdout.write(`wall time ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  const machineAtEnd = machine();
  process.stdout.write(`${machineLine('machine at start', machineAtStart)}\n${machineLine('machine at end', machineAtEnd)}\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'failover',
      machine: { start: machineAtStart, end: machineAtEnd },
      runs: results.length,
      ttlS: ttl,
      staleSessions: opts['stale-sessions'] > 0,
      failoverMs: failover,
      detectionMs: detection,
      electedMs: elected,
      promotionAndFirstWriteMs: promotion,
      rejoinMs: rejoin,
      healthyAgainMs: healthyAgain,
      failoverOverTtl: ratio,
      secondWritablePrimaryMoments: secondWritable,
      oldLeaderNotInRecoveryAnswers: notInRecovery,
      oldLeaderProbes: probes,
      staleSessionCommits: staleCommitted,
      failedFailovers,
      failedRejoins,
      aborted: aborted ?? null,
      savedLogs: savedLogs ?? null,
      perRun: results,
    })}\n`,
  );
  if (results.length < opts.runs) process.exitCode = 1;
});
