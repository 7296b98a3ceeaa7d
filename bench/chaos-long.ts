/**
 * `npm run chaos`: the long randomized chaos run (not in CI). Brings up a fresh local cluster, runs
 * 50 seeded random rounds of every fault that needs no namespaces while the writer records every
 * acknowledged write, prints the checker's report, saves it as JSON, and exits 1 when a promise broke.
 *
 *   npm run build && npm run chaos -- [--rounds 50] [--seed 0 = random] [--sync off|strict] [--dir /var/tmp/warden-chaos-long]
 *
 * --sync strict starts the cluster with synchronous_mode on and synchronous_mode_strict: then no
 * acknowledged write may be lost; in async mode (off) lost writes are reported and must stay within
 * maximum_lag_on_failover.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chaosReportJson, injectFault, LOCAL_FAULTS, localCluster, parseFaults, renderChaosReport, runChaos } from '../src/chaos/index.js';
import { clusterDown, logger, onCleanup, parseOptions, requireBuild, runBench, warden } from './support.js';

const opts = parseOptions({ rounds: 50, seed: 'random', sync: 'off', dir: '/var/tmp/warden-chaos-long', faults: LOCAL_FAULTS.join(',') });
const log = logger('chaos');

await runBench(async () => {
  requireBuild();
  const faults = parseFaults(opts.faults);
  if (!faults.ok) throw new Error(faults.message);
  if (opts.sync !== 'off' && opts.sync !== 'strict') throw new Error('--sync: off or strict');
  const seed = opts.seed === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(opts.seed);
  const dir = join(opts.dir, 'cluster');
  mkdirSync(opts.dir, { recursive: true });
  await clusterDown(dir, log);
  const specFile = join(opts.dir, 'cluster.yaml');
  const sync = opts.sync === 'strict' ? '      synchronous_mode: true\n      synchronous_mode_strict: true\n' : '';
  writeFileSync(specFile, `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: chaos\nspec:\n  instances:\n    - name: instance1\n      replicas: 3\n  patroni:\n    dynamicConfiguration:\n      ttl: 2\n${sync}`);
  onCleanup(() => clusterDown(dir, log));
  log(`warden up -f ${specFile} --dir ${dir}`);
  const up = await warden(['up', '--static', '-f', specFile, '--dir', dir], 300_000);
  if (up.code !== 0) throw new Error(`warden up failed (exit ${up.code}):\n${up.stdout}\n${up.stderr}`);
  const cluster = await localCluster(dir);
  log(`seed ${seed}: ${opts.rounds} rounds of ${faults.faults.join(', ')}`);
  const report = await runChaos({
    cluster,
    faults: faults.faults,
    rounds: opts.rounds,
    seed,
    log,
    inject: (kind, ctx) => injectFault(faults.faults.find((f) => f === kind) ?? 'kill', cluster, ctx.health, ctx.rng, { ttlMs: ctx.ttlMs }),
  });
  process.stdout.write(`${renderChaosReport(report)}\n`);
  const file = join(opts.dir, `chaos-${opts.sync}-seed${seed}.json`);
  writeFileSync(file, chaosReportJson(report));
  process.stdout.write(`JSON: ${file}\n`);
  if (!report.summary.ok) process.exitCode = 1;
});
