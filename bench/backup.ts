/**
 * Backups: `warden backup --type full --wait` against plain `pgbackrest backup` with the same source
 * (the same standby, the same primary, the same config) on the same database, alternating, and a
 * restore drill of the result.
 *
 *   npm run build && node --import tsx bench/backup.ts [--scale 20] [--rounds 2] [--dir /var/tmp/warden-bench-backup]
 *
 * The database is pgbench's at --scale (≈ 15 MB per unit). Times are wall clock of the whole
 * command (warden: including its etcd lock and the info read after the backup). The ratio is the
 * median plain time over the median warden time (≥ 0.95 is the target).
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fmt, logger, machine, machineLine, onCleanup, parseOptions, readState, run, runBench, summarize, table, warden } from './support.js';

const opts = parseOptions({ scale: 20, rounds: 2, dir: '/var/tmp/warden-bench-backup' });
const log = logger('backup');

const SPEC = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: bench
spec:
  instances: [{ name: instance1, replicas: 2 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global: { repo1-retention-full: 2 }
      repos: [{ name: repo1, volume: {} }]
`;

interface Runtime {
  readonly members: readonly { name: string; pgPort: number; memberDir: string; dataDir: string }[];
  readonly backup: { configFile: string; stanza: string };
}

await runBench(async () => {
  const m0 = machine();
  const dir = opts.dir;
  await run('mkdir', ['-p', '-m', '755', `${dir}-spec`], { timeoutMs: 5000 });
  const specFile = join(`${dir}-spec`, 'cluster.yaml');
  await writeFile(specFile, SPEC);
  await warden(['down', '--dir', dir, '--purge'], 180_000);
  onCleanup(async () => {
    log(`warden down --dir ${dir} --purge`);
    await warden(['down', '--dir', dir, '--purge'], 180_000);
    await rm(`${dir}-spec`, { recursive: true, force: true });
  });
  const up = await warden(['up', '--static', '-f', specFile, '--dir', dir], 400_000);
  if (up.code !== 0) throw new Error(`warden up failed:\n${up.stdout}\n${up.stderr}`);
  const state = await readState(dir);
  const layout = JSON.parse(await run('cat', [join(dir, 'runtime.json')], { timeoutMs: 5000 }).then((r) => r.stdout)) as Runtime;
  const list = JSON.parse((await warden(['list', '--dir', dir, '--format', 'json'])).stdout) as { members: { name: string; role: string; host: string; port: number }[] };
  const leader = list.members.find((m) => m.role === 'leader');
  if (leader === undefined) throw new Error('no leader');
  log(`pgbench -i -s ${opts.scale} on ${leader.name} …`);
  const init = await run('pgbench', ['-i', '-q', '-s', String(opts.scale), '-h', leader.host, '-p', String(leader.port), '-U', 'postgres', 'postgres'], { timeoutMs: 1_800_000, env: { ...process.env, PGPASSFILE: state.pgpassFile } });
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);

  // The first warden backup picks the source; plain pgbackrest then uses the same one.
  const first = await warden(['backup', '--dir', dir, '--type', 'full', '--wait', '--format', 'json'], 3_600_000);
  if (first.code !== 0) throw new Error(`warden backup failed: ${first.stderr}`);
  const picked = JSON.parse(first.stdout) as { from: string; primary: string; set: { databaseBytes: number } };
  log(`warm-up warden backup from ${picked.from}: ${(first.ms / 1000).toFixed(1)} s, ${picked.set.databaseBytes} bytes`);
  const member = (name: string): Runtime['members'][number] => {
    const m = layout.members.find((x) => x.name === name);
    if (m === undefined) throw new Error(`no member ${name}`);
    return m;
  };
  const pgFlags = (i: number, name: string): string[] => {
    const m = member(name);
    return [`--pg${i}-path=${m.dataDir}`, `--pg${i}-port=${m.pgPort}`, `--pg${i}-socket-path=${join(m.memberDir, 'run')}`];
  };
  const servers = picked.from === picked.primary ? pgFlags(1, picked.primary) : [...pgFlags(1, picked.from), ...pgFlags(2, picked.primary), '--backup-standby'];
  const plainArgs = [`--config=${layout.backup.configFile}`, `--stanza=${layout.backup.stanza}`, ...servers, '--type=full', 'backup'];
  const asRunUser = process.getuid?.() === 0 ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', 'pgbackrest', ...plainArgs]] as const : ['pgbackrest', plainArgs] as const;

  const plainMs: number[] = [];
  const wardenMs: number[] = [];
  for (let i = 0; i < opts.rounds; i++) {
    const p = await run(asRunUser[0], asRunUser[1], { timeoutMs: 3_600_000 });
    if (p.code !== 0) throw new Error(`pgbackrest backup failed: ${p.stderr}${p.stdout}`);
    plainMs.push(p.ms);
    const w = await warden(['backup', '--dir', dir, '--type', 'full', '--wait', '--format', 'json'], 3_600_000);
    if (w.code !== 0) throw new Error(`warden backup failed: ${w.stderr}`);
    wardenMs.push(w.ms);
    log(`round ${i + 1}: plain ${(p.ms / 1000).toFixed(1)} s, warden ${(w.ms / 1000).toFixed(1)} s`);
  }

  const drill = await warden(['restore-drill', '--dir', dir, '--format', 'json', '--check-sql', 'SELECT count(*) FROM pgbench_accounts'], 3_600_000);
  if (drill.code !== 0) throw new Error(`restore-drill failed: ${drill.stderr}`);
  const d = JSON.parse(drill.stdout) as { databaseBytes: number; restoreSeconds: number; megabytesPerSecond: number; recoverySeconds: number; check: { value: string | null } };

  const p = summarize(plainMs);
  const w = summarize(wardenMs);
  process.stdout.write(`${machineLine('start', m0)}\n${machineLine('end', machine())}\n`);
  process.stdout.write(`database: pgbench scale ${opts.scale}, ${(picked.set.databaseBytes / 1e6).toFixed(0)} MB; backups from ${picked.from} (primary ${picked.primary})\n`);
  process.stdout.write(
    `${table(
      ['what', 'median s', 'min s', 'max s', 'runs'],
      [
        ['plain pgbackrest backup --type=full', fmt(p.median / 1000, 1), fmt(p.min / 1000, 1), fmt(p.max / 1000, 1), String(p.n)],
        ['warden backup --type full --wait', fmt(w.median / 1000, 1), fmt(w.min / 1000, 1), fmt(w.max / 1000, 1), String(w.n)],
      ],
    )}\n`,
  );
  process.stdout.write(`ratio plain/warden (median): ${fmt(p.median / w.median, 3)}\n`);
  process.stdout.write(`restore drill: ${(d.databaseBytes / 1e6).toFixed(0)} MB restored in ${fmt(d.restoreSeconds, 1)} s = ${fmt(d.megabytesPerSecond, 1)} MB/s; recovered and writable ${fmt(d.recoverySeconds, 1)} s later; pgbench_accounts rows: ${d.check.value ?? '?'}\n`);
});
