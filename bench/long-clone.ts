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
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fillDatabase, reinitAndWatch } from '../test/support/long-clone.js';
import { clusterUp, fmt, logger, machine, machineLine, now, parseOptions, PG_BIN_DIR, runBench, summarize, table, waitHealthy } from './support.js';

const log = logger('long-clone');

await runBench(async () => {
  const opts = parseOptions({ 'size-mb': 1024, runs: 3, dir: '/tmp/warden-bench-clone' });
  const before = machine();
  const { state } = await clusterUp(opts.dir, log);
  const healthy = await waitHealthy(state, 120_000);
  const leader = healthy.leader;
  const replica = healthy.replicas[0];
  if (replica === undefined) throw new Error('no replica in the cluster');
  log(`filling ${leader.name} with ${opts['size-mb']} MB …`);
  const fillStarted = now();
  const bytes = await fillDatabase(opts.dir, leader.host, leader.port, opts['size-mb']);
  log(`database is ${Math.round(bytes / 1048576)} MB after ${((now() - fillStarted) / 1000).toFixed(1)} s`);
  const replPassword = (await readFile(join(opts.dir, 'secrets', 'replication.password'), 'utf8')).trim();
  const scratch = join(opts.dir, 'bench-scratch');
  const rows: string[][] = [];
  const plain: number[] = [];
  const ours: number[] = [];
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
      `database ${Math.round(bytes / 1048576)} MB, ${state.members.length} members; re-clone of ${replica.name} from ${leader.name}`,
      table(['run', 'plain s', 'warden s', 'ratio', 'MB/s', 'liveness≠200', 'progress samples', 'percent seen'], rows),
      `plain pg_basebackup: median ${fmt(p.median, 1)} s (min ${fmt(p.min, 1)}, max ${fmt(p.max, 1)}); warden reinit → streaming: median ${fmt(o.median, 1)} s (min ${fmt(o.min, 1)}, max ${fmt(o.max, 1)}); ratio of medians ${fmt(o.median / p.median)}`,
      '',
    ].join('\n'),
  );
});
