/**
 * "Agent shell" must-show, measured: a replica re-cloned from a leader holding a 1 GB database
 * (`warden reinit`: data moved aside, pg_basebackup from the leader, start, streaming again). The
 * clone runs beside the HA loop: /liveness must answer 200 throughout and `warden list` must show
 * the operation and its progress.
 *
 *   npm run build && node --import tsx bench/long-clone.ts [--size-mb 1024] [--runs 3] [--dir /tmp/warden-bench-clone]
 *
 * Reference in the same run: a plain `pg_basebackup -X stream -c fast` of the same leader into a
 * scratch directory (same machine, same data); ratio = warden's reinit-to-streaming time / plain copy.
 *
 * With `--from-repository 1` the cluster has a pgBackRest repository and a full backup is taken
 * after the fill: the re-seeded replica is restored from it (standby restore) instead of being
 * copied from the primary, and the run also reports how the agent seeded it.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fillDatabase, reinitAndWatch } from '../test/support/long-clone.js';
import { clusterUp, fmt, logger, machine, machineLine, now, parseOptions, PG_BIN_DIR, runBench, summarize, table, waitHealthy, warden } from './support.js';

const log = logger('long-clone');

await runBench(async () => {
  const opts = parseOptions({ 'size-mb': 1024, runs: 3, dir: '/tmp/warden-bench-clone', 'from-repository': 0 });
  const fromRepo = opts['from-repository'] === 1;
  const before = machine();
  let specFile: string | undefined;
  if (fromRepo) {
    specFile = `${opts.dir}.yaml`;
    await writeFile(specFile, ['apiVersion: warden.dev/v1', 'kind: Cluster', 'metadata:', '  name: demo', 'spec:', '  instances: [{ name: instance1, replicas: 3 }]', '  backups:', '    pgbackrest:', '      repos:', '        - name: repo1', '          volume: {}', ''].join('\n'));
  }
  const { state } = await clusterUp(opts.dir, log, specFile);
  const healthy = await waitHealthy(state, 120_000);
  const leader = healthy.leader;
  const replica = healthy.replicas[0];
  if (replica === undefined) throw new Error('no replica in the cluster');
  log(`filling ${leader.name} with ${opts['size-mb']} MB …`);
  const fillStarted = now();
  const bytes = await fillDatabase(opts.dir, leader.host, leader.port, opts['size-mb']);
  log(`database is ${Math.round(bytes / 1048576)} MB after ${((now() - fillStarted) / 1000).toFixed(1)} s`);
  if (fromRepo) {
    const b = await warden(['backup', '--dir', opts.dir, '--type', 'full', '--wait'], 1_800_000);
    if (b.code !== 0) throw new Error(`warden backup failed: ${b.stdout}\n${b.stderr}`);
    log(`full backup taken in ${(b.ms / 1000).toFixed(1)} s`);
  }
  const replPassword = (await readFile(join(opts.dir, 'secrets', 'replication.password'), 'utf8')).trim();
  const scratch = join(opts.dir, 'bench-scratch');
  const rows: string[][] = [];
  const plain: number[] = [];
  const ours: number[] = [];
  const seededBy: string[] = [];
  for (let run = 1; run <= opts.runs; run++) {
    await rm(scratch, { recursive: true, force: true });
    await mkdir(scratch, { recursive: true });
    await chmod(scratch, 0o777);
    const t0 = now();
    const ref = spawnSync('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', join(PG_BIN_DIR, 'pg_basebackup'), '-D', join(scratch, 'data'), '-h', leader.host, '-p', String(leader.port), '-U', 'replicator', '-X', 'stream', '-c', 'fast', '--no-password'], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', PGPASSWORD: replPassword },
      timeout: 600_000,
      encoding: 'utf8',
    });
    if (ref.status !== 0) throw new Error(`reference pg_basebackup failed: ${ref.stderr}`);
    const refS = (now() - t0) / 1000;
    await rm(scratch, { recursive: true, force: true });
    log(`run ${run}: plain pg_basebackup ${refS.toFixed(1)} s; warden reinit ${replica.name} …`);
    const r = await reinitAndWatch(opts.dir, { name: replica.name, apiUrl: replica.apiUrl }, 900_000);
    const agentLog = await readFile(join(opts.dir, 'members', replica.name, 'agent.log'), 'utf8');
    const lastReinit = agentLog.slice(agentLog.lastIndexOf('reinitializ'));
    seededBy.push(/replica seeded from the backup repository/.test(lastReinit) ? 'repository' : /cloning with pg_basebackup/.test(lastReinit) ? 'pg_basebackup' : '?');
    const withProgress = r.operations.filter((o) => o.kind === 'clone' && o.percent !== null);
    plain.push(refS);
    ours.push(r.cloneSeconds);
    rows.push([String(run), fmt(refS, 1), fmt(r.cloneSeconds, 1), fmt(r.cloneSeconds / refS), fmt(bytes / 1048576 / r.cloneSeconds, 0), `${r.livenessNot200}/${r.livenessSamples}`, `${withProgress.length}/${r.operations.length}`, withProgress.map((o) => String(o.percent)).join(' ')]);
  }
  const p = summarize(plain);
  const o = summarize(ours);
  process.stdout.write(
    [
      machineLine('start', before),
      machineLine('end', machine()),
      `database ${Math.round(bytes / 1048576)} MB, ${state.members.length} members; re-clone of ${replica.name} from ${leader.name}; seeded by: ${seededBy.join(', ')}`,
      table(['run', 'plain s', 'warden s', 'ratio', 'MB/s', 'liveness≠200', 'progress samples', 'percent seen'], rows),
      `plain pg_basebackup: median ${fmt(p.median, 1)} s (min ${fmt(p.min, 1)}, max ${fmt(p.max, 1)}); warden reinit → streaming: median ${fmt(o.median, 1)} s (min ${fmt(o.min, 1)}, max ${fmt(o.max, 1)}); ratio of medians ${fmt(o.median / p.median)}`,
      '',
    ].join('\n'),
  );
});
