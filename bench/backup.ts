/**
 * Backups: `warden backup --type full --wait` against plain `pgbackrest backup` with the same source
 * (the same standby, the same primary, the same config) on the same database, alternating, and a
 * restore drill of the result.
 *
 *   npm run build && node --import tsx bench/backup.ts [--scale 20] [--rounds 2] [--s3 0|1] [--dir /var/tmp/warden-bench-backup]
 *
 * The database is pgbench's at --scale (≈ 15 MB per unit). Times are wall clock of the whole
 * command (warden: including its etcd lock and the info read after the backup). The ratio is the
 * median plain time over the median warden time (≥ 0.95 is the issue's target). With --s3 1 the
 * cluster has a second repository, repo2, in an S3-compatible server on loopback (s3rver over TLS,
 * the test's setup), and each round backs up into both: the same ratio for the bucket, and the
 * bucket's time against the posix repository's in the same run.
 */
import { spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePorts } from '../src/core/free-port.js';
import { signalPid } from '../src/core/process-info.js';
import { fmt, logger, machine, machineLine, onCleanup, parseOptions, readState, REPO, run, runBench, summarize, table, warden } from './support.js';

const opts = parseOptions({ scale: 20, rounds: 2, s3: 0, dir: '/var/tmp/warden-bench-backup' });
const log = logger('backup');

const spec = (s3Port: number | undefined, caFile: string): string => `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: bench
spec:
  instances: [{ name: instance1, replicas: 2 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global: { repo1-retention-full: 2${s3Port === undefined ? '' : `, repo2-retention-full: 2, repo2-s3-key: S3RVER, repo2-s3-key-secret: S3RVER, repo2-s3-uri-style: path, repo2-storage-port: ${s3Port}, repo2-storage-ca-file: ${caFile}`} }
      repos:
        - { name: repo1, volume: {} }${s3Port === undefined ? '' : '\n        - { name: repo2, s3: { bucket: bench, endpoint: localhost, region: us-east-1 } }'}
`;

/** An S3-compatible server on the loopback address localhost resolves to, over TLS with a self-signed certificate for localhost (its own CA file). */
async function startS3(dir: string): Promise<{ port: number; caFile: string }> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const ssl = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 's3.key'), '-out', join(dir, 's3.pem')];
  const made = await run('openssl', ssl, { timeoutMs: 30_000 });
  if (made.code !== 0) throw new Error(`openssl: ${made.stderr}`);
  await run('chmod', ['644', join(dir, 's3.pem')], { timeoutMs: 5000 });
  const port = (await freePorts(1))[0];
  if (port === undefined) throw new Error('no free port');
  const address = (await lookup('localhost')).address;
  const child = spawn(process.execPath, [join(REPO, 'node_modules', 's3rver', 'bin', 's3rver.js'), '-d', join(dir, 'data'), '-a', address, '-p', String(port), '--key', join(dir, 's3.key'), '--cert', join(dir, 's3.pem'), '--configure-bucket', 'bench', '--silent'], { stdio: 'ignore' });
  onCleanup(() => {
    if (child.pid !== undefined && child.exitCode === null) signalPid(child.pid, 'SIGKILL');
    return Promise.resolve();
  });
  await new Promise((r) => setTimeout(r, 2000));
  return { port, caFile: join(dir, 's3.pem') };
}

interface Runtime {
  readonly members: readonly { name: string; pgPort: number; memberDir: string; dataDir: string }[];
  readonly backup: { configFile: string; stanza: string };
}

await runBench(async () => {
  const m0 = machine();
  const dir = opts.dir;
  await run('mkdir', ['-p', '-m', '755', `${dir}-spec`], { timeoutMs: 5000 });
  const specFile = join(`${dir}-spec`, 'cluster.yaml');
  const s3 = opts.s3 === 1 ? await startS3(`${dir}-s3`) : undefined;
  if (s3 !== undefined) onCleanup(() => rm(`${dir}-s3`, { recursive: true, force: true }));
  await writeFile(specFile, spec(s3?.port, s3?.caFile ?? ''));
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
  const plainArgs = (repo: number): string[] => [`--config=${layout.backup.configFile}`, `--stanza=${layout.backup.stanza}`, ...servers, `--repo=${repo}`, '--type=full', 'backup'];
  const asRunUser = (repo: number): readonly [string, readonly string[]] =>
    process.getuid?.() === 0 ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', 'pgbackrest', ...plainArgs(repo)]] : ['pgbackrest', plainArgs(repo)];
  const repos = s3 === undefined ? [1] : [1, 2];
  if (s3 !== undefined) {
    const warm = await warden(['backup', '--dir', dir, '--type', 'full', '--repo', 'repo2', '--wait'], 3_600_000);
    if (warm.code !== 0) throw new Error(`warden backup --repo repo2 failed: ${warm.stderr}`);
    log(`warm-up warden backup into the bucket: ${(warm.ms / 1000).toFixed(1)} s`);
  }

  const plainMs = new Map<number, number[]>(repos.map((r) => [r, []]));
  const wardenMs = new Map<number, number[]>(repos.map((r) => [r, []]));
  for (let i = 0; i < opts.rounds; i++) {
    for (const repo of repos) {
      const [cmd, args] = asRunUser(repo);
      const p = await run(cmd, args, { timeoutMs: 3_600_000 });
      if (p.code !== 0) throw new Error(`pgbackrest backup --repo=${repo} failed: ${p.stderr}${p.stdout}`);
      plainMs.get(repo)?.push(p.ms);
      const w = await warden(['backup', '--dir', dir, '--type', 'full', '--repo', `repo${repo}`, '--wait', '--format', 'json'], 3_600_000);
      if (w.code !== 0) throw new Error(`warden backup --repo repo${repo} failed: ${w.stderr}`);
      wardenMs.get(repo)?.push(w.ms);
      log(`round ${i + 1}, repo${repo}: plain ${(p.ms / 1000).toFixed(1)} s, warden ${(w.ms / 1000).toFixed(1)} s`);
    }
  }

  const drill = await warden(['restore-drill', '--dir', dir, '--format', 'json', '--check-sql', 'SELECT count(*) FROM pgbench_accounts'], 3_600_000);
  if (drill.code !== 0) throw new Error(`restore-drill failed: ${drill.stderr}`);
  const d = JSON.parse(drill.stdout) as { databaseBytes: number; restoreSeconds: number; megabytesPerSecond: number; recoverySeconds: number; check: { value: string | null } };

  process.stdout.write(`${machineLine('start', m0)}\n${machineLine('end', machine())}\n`);
  process.stdout.write(`database: pgbench scale ${opts.scale}, ${(picked.set.databaseBytes / 1e6).toFixed(0)} MB; backups from ${picked.from} (primary ${picked.primary})\n`);
  const where = (repo: number): string => (repo === 1 ? 'repo1 (posix)' : 'repo2 (s3, loopback)');
  const rows = repos.flatMap((repo) => {
    const p = summarize(plainMs.get(repo) ?? []);
    const w = summarize(wardenMs.get(repo) ?? []);
    return [
      [`plain pgbackrest backup --type=full, ${where(repo)}`, fmt(p.median / 1000, 1), fmt(p.min / 1000, 1), fmt(p.max / 1000, 1), String(p.n)],
      [`warden backup --type full --wait, ${where(repo)}`, fmt(w.median / 1000, 1), fmt(w.min / 1000, 1), fmt(w.max / 1000, 1), String(w.n)],
    ];
  });
  process.stdout.write(`${table(['what', 'median s', 'min s', 'max s', 'runs'], rows)}\n`);
  for (const repo of repos) process.stdout.write(`ratio plain/warden (median), ${where(repo)}: ${fmt(summarize(plainMs.get(repo) ?? []).median / summarize(wardenMs.get(repo) ?? []).median, 3)}\n`);
  if (s3 !== undefined) process.stdout.write(`warden backup, s3 over posix (median): ${fmt(summarize(wardenMs.get(2) ?? []).median / summarize(wardenMs.get(1) ?? []).median, 2)}×\n`);
  process.stdout.write(`restore drill: ${(d.databaseBytes / 1e6).toFixed(0)} MB restored in ${fmt(d.restoreSeconds, 1)} s = ${fmt(d.megabytesPerSecond, 1)} MB/s; recovered and writable ${fmt(d.recoverySeconds, 1)} s later; pgbench_accounts rows: ${d.check.value ?? '?'}\n`);
});
