/**
 * The same fault against Warden and against Patroni 3.0.2 (Debian's package), in one run, with the
 * same writer, the same fault code and the same checker (src/chaos): freeze the primary (its agent /
 * Patroni and every PostgreSQL process SIGSTOPped) after a random delay in [0, loop_wait), so that it
 * lands anywhere in the loop cycle, for 1.5–2 TTLs plus a second, then SIGCONT.
 *
 *   npm run build && node --import tsx bench/chaos-compare.ts [--rounds 3] [--seed 1] [--systems warden,patroni-fast,patroni-default]
 *
 * Systems: warden (its defaults: ttl 2, loop_wait 0.5, retry_timeout 0.75), patroni-fast (ttl 10,
 * loop_wait 2, retry_timeout 4), patroni-default (Patroni's defaults: ttl 30, loop_wait 10,
 * retry_timeout 10). Each runs 3 PostgreSQL 15 members against its own 3-member etcd on free
 * loopback ports. The writer follows whichever member answers GET /primary with 200 on both (Patroni
 * has no router of its own). Per system: median unavailability (the longest stretch without an acknowledged
 * write from the freeze until the cluster is whole again), lost acknowledged writes, median rejoin
 * (thaw → every member streaming), overlapping primaries; then Warden/Patroni ratios.
 */
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { injectFault, localCluster, runChaos, type ChaosCluster, type ChaosReport } from '../src/chaos/index.js';
import { PATRONI_DEFAULTS, PatroniCluster, patroniUnavailable, type PatroniTiming } from './chaos-patroni.js';
import { clusterDown, clusterUp, fmt, logger, onCleanup, parseOptions, runBench, table, warden } from './support.js';

const opts = parseOptions({ rounds: 3, seed: 1, dir: '/var/tmp/warden-chaos-compare', systems: 'warden,patroni-fast,patroni-default' });
const log = logger('chaos-compare');

interface SystemResult {
  readonly system: string;
  readonly timing: string;
  readonly report: ChaosReport | undefined;
  readonly error?: string;
  /** 1-minute load average before and after (the machine may be shared). */
  readonly load?: string;
}

const PATRONI_FAST: PatroniTiming = { ttl: 10, loop_wait: 2, retry_timeout: 4 };

async function freezeRounds(cluster: ChaosCluster, loopWaitS: number, ttlS: number): Promise<ChaosReport> {
  return runChaos({
    cluster,
    faults: ['freeze'],
    rounds: opts.rounds,
    seed: opts.seed,
    log,
    maxDelayMs: loopWaitS * 1000,
    recoveryTimeoutMs: Math.max(180_000, 8 * ttlS * 1000),
    // The same client path for both: Patroni has no router, so Warden's is not used either.
    via: 'primary',
    inject: (_kind, ctx) => injectFault('freeze', cluster, ctx.health, ctx.rng, { ttlMs: ctx.ttlMs, freezeTtls: [1.5, 2] }),
  });
}

async function runWarden(): Promise<SystemResult> {
  const dir = join(opts.dir, 'warden');
  try {
    await clusterUp(dir, log);
  } catch (e) {
    // Under heavy load `warden up` can give up on a supervisor that is merely slow to write its PID
    // file ("the supervisor exited") while the cluster goes on starting; a second `up` reports it.
    log(`warden up failed once (${e instanceof Error ? e.message.split('\n').slice(-2).join(' ') : String(e)}); asking again`);
    const again = await warden(['up', '--static', '--dir', dir], 300_000);
    if (again.code !== 0) throw new Error(`warden up failed twice: ${again.stderr}`);
  }
  try {
    return { system: 'Warden', timing: 'ttl 2 / loop_wait 0.5 / retry_timeout 0.75', report: await freezeRounds(await localCluster(dir), 0.5, 2) };
  } finally {
    await clusterDown(dir, log);
  }
}

async function runPatroni(name: string, timing: PatroniTiming): Promise<SystemResult> {
  const label = `ttl ${timing.ttl} / loop_wait ${timing.loop_wait} / retry_timeout ${timing.retry_timeout}`;
  const why = patroniUnavailable();
  if (why !== undefined) return { system: name, timing: label, report: undefined, error: why };
  log(`${name}: starting Patroni 3.0.2 (${label})`);
  const c = await PatroniCluster.start(join(opts.dir, name), timing, log);
  onCleanup(() => c.stop());
  try {
    return { system: name, timing: label, report: await freezeRounds(c, timing.loop_wait, timing.ttl) };
  } finally {
    await c.stop();
  }
}

const s = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '—' : fmt(ms / 1000, 2));
const ratio = (a: number | null | undefined, b: number | null | undefined): string => (a === null || a === undefined || b === null || b === undefined || b === 0 ? '—' : fmt(a / b, 2));

await runBench(async () => {
  const systems = opts.systems.split(',').map((x) => x.trim());
  const results: SystemResult[] = [];
  const load = (): string => fmt(loadavg()[0], 1);
  for (const sys of systems) {
    const before = load();
    let r: SystemResult;
    try {
      if (sys === 'warden') r = await runWarden();
      else if (sys === 'patroni-fast') r = await runPatroni('patroni-fast', PATRONI_FAST);
      else if (sys === 'patroni-default') r = await runPatroni('patroni-default', PATRONI_DEFAULTS);
      else throw new Error(`unknown system ${sys}`);
    } catch (e) {
      r = { system: sys, timing: '', report: undefined, error: e instanceof Error ? e.message : String(e) };
    }
    results.push({ ...r, load: `${before} → ${load()}` });
  }
  const rows = results.map((r) => {
    const m = r.report?.summary;
    const rounds = r.report?.rounds ?? [];
    return [
      r.system,
      r.timing,
      m === undefined ? `not run: ${r.error ?? '?'}` : `${m.injected}/${m.rounds}`,
      s(m?.unavailableMs.median),
      s(m?.unavailableMs.max),
      m === undefined ? '—' : `${m.lostWrites} (${rounds.map((x) => x.lostWrites).join('/')})`,
      s(m?.rejoinMs.median),
      m === undefined ? '—' : `${m.overlaps} (${fmt(m.overlapMs / 1000, 1)} s / ${fmt(m.overlapSpanMs / 1000, 1)} s)`,
      m === undefined ? '—' : String(m.acked),
      r.load ?? '',
    ];
  });
  process.stdout.write(`\nFreeze the primary, ${opts.rounds} round(s) per system, seed ${opts.seed}\n\n`);
  process.stdout.write(`${table(['system', 'timing', 'rounds', 'unavail. median s', 'unavail. max s', 'lost writes (per round)', 'rejoin median s', 'overlaps (concurrent / span)', 'acked', 'load 1m'], rows)}\n\n`);
  const w = results.find((r) => r.system === 'Warden')?.report?.summary;
  for (const p of results.filter((r) => r.system.startsWith('patroni'))) {
    const ps = p.report?.summary;
    process.stdout.write(
      `Warden / ${p.system}: unavailability ${ratio(w?.unavailableMs.median, ps?.unavailableMs.median)}, rejoin ${ratio(w?.rejoinMs.median, ps?.rejoinMs.median)}, ` +
        `lost writes ${w?.lostWrites ?? '—'} vs ${ps?.lostWrites ?? '—'}\n`,
    );
  }
  for (const r of results) for (const v of r.report?.summary.violations ?? []) process.stdout.write(`${r.system}: ${v}\n`);
  mkdirSync(opts.dir, { recursive: true });
  const file = join(opts.dir, `chaos-compare-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`);
  writeFileSync(file, JSON.stringify(results.map((r) => ({ system: r.system, timing: r.timing, error: r.error, load: r.load, rounds: r.report?.rounds, summary: r.report?.summary, epochs: r.report?.check.epochs, overlaps: r.report?.check.overlaps })), null, 2));
  process.stdout.write(`\nJSON: ${file}\n`);
});
