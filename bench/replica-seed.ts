/**
 * Backups, "a replica from the repository vs pg_basebackup": the time to re-create a replica
 * (`warden reinit`) and the bytes the primary sends for it, when the agent seeds it from the backup
 * repository (cluster with spec.backups and a full backup) against a cluster without backups,
 * where the same reinit clones with pg_basebackup (the reference, measured in the same run).
 *
 *   npm run build && node --import tsx bench/replica-seed.ts [--scale 30] [--rounds 3] [--nodes 0|3] [--dir /var/tmp/warden-bench-replica-seed]
 *
 * Both clusters: 2 members, 1 etcd member, pgbench's database at --scale (≈ 15 MB per unit), no
 * writer. Time: from `warden reinit` to the replica streaming under a new postmaster. Bytes read
 * from the primary: what the primary's walsender processes that started after the reinit read
 * (`rchar` of /proc/<pid>/io: the data files a base backup sends, the WAL the streaming sends; the
 * socket sends themselves are not in /proc/<pid>/io), sampled every 20 ms (the last 20 ms of a
 * walsender that exits can be missed). The clusters run one after the other, never together.
 * `--nodes 3`: both clusters run on node daemons (`warden up --nodes 3`): the controller places the
 * members, the node daemons write their pgBackRest files, the leader's agent creates the stanza.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fmt, logger, machine, machineLine, now, onCleanup, parseOptions, postmasterPid, run, runBench, sleep, summarize, table, warden } from './support.js';

const opts = parseOptions({ scale: 30, rounds: 3, nodes: 0, dir: '/var/tmp/warden-bench-replica-seed' });
const log = logger('replica-seed');

const spec = (name: string, backups: boolean): string => `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: ${name}
spec:
  instances: [{ name: instance1, replicas: 2 }]
  warden: { etcd: { members: 1 } }
${backups ? '  backups:\n    pgbackrest:\n      repos: [{ name: repo1, volume: {} }]\n' : ''}`;

interface ListMember {
  name: string;
  role: string;
  state: string;
  host: string;
  port: number;
}

/** Children of `ppid` whose command line says walsender. */
async function walsenders(ppid: number): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== ppid) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('walsender')) out.push(pid);
  }
  return out;
}

/** Samples the walsenders of `postmaster` started after now: returns stop() → the bytes they read. */
function sampleWalsenders(postmaster: number, before: ReadonlySet<number>): { stop: () => Promise<number> } {
  const read = new Map<number, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const pid of await walsenders(postmaster)) {
        if (before.has(pid)) continue;
        const io = await readFile(`/proc/${pid}/io`, 'utf8').catch(() => '');
        const m = /^rchar: (\d+)$/m.exec(io);
        if (m?.[1] !== undefined) read.set(pid, Math.max(read.get(pid) ?? 0, Number(m[1])));
      }
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return [...read.values()].reduce((a, b) => a + b, 0);
    },
  };
}

interface Round {
  readonly seconds: number;
  readonly mb: number;
  readonly how: string;
}

/** Brings up one cluster, fills it, (with backups) takes a full backup, then re-creates its replica `rounds` times. */
async function measure(name: string, backups: boolean): Promise<{ rounds: Round[]; dbMb: number }> {
  const dir = `${opts.dir}-${name}`;
  const specFile = `${dir}.yaml`;
  await writeFile(specFile, spec(name, backups));
  await warden(['down', '--dir', dir, '--purge'], 180_000);
  const cleanup = async (): Promise<void> => {
    await warden(['down', '--dir', dir, '--purge'], 180_000);
    await rm(specFile, { force: true });
  };
  onCleanup(cleanup);
  const up = await warden(['up', '-f', specFile, '--dir', dir, ...(opts.nodes > 0 ? ['--nodes', String(opts.nodes)] : ['--static'])], 400_000);
  if (up.code !== 0) throw new Error(`warden up ${name}:\n${up.stdout}\n${up.stderr}`);
  const list = async (): Promise<ListMember[]> => (JSON.parse((await warden(['list', '--dir', dir, '--format', 'json'])).stdout) as { members: ListMember[] }).members;
  const leader = (await list()).find((m) => m.role === 'leader');
  if (leader === undefined) throw new Error(`${name}: no leader`);
  const env = { ...process.env, PGPASSFILE: join(dir, 'pgpass') };
  log(`${name}: pgbench -i -s ${opts.scale} on ${leader.name} …`);
  const init = await run('pgbench', ['-i', '-q', '-s', String(opts.scale), '-h', leader.host, '-p', String(leader.port), '-U', 'postgres', 'postgres'], { timeoutMs: 1_800_000, env });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  const size = await run('psql', ['-Atc', 'SELECT pg_database_size(current_database()) / 1048576', '-h', leader.host, '-p', String(leader.port), '-U', 'postgres', 'postgres'], { timeoutMs: 30_000, env });
  const dbMb = Number(size.stdout.trim());
  if (backups) {
    log(`${name}: warden backup --type full --wait …`);
    const b = await warden(['backup', '--type', 'full', '--wait', '--dir', dir], 1_800_000);
    if (b.code !== 0) throw new Error(`warden backup: ${b.stdout}\n${b.stderr}`);
  }
  // A static runtime's member directories are in runtime.json; node daemons' in state.json (where the controller placed them).
  const layout = JSON.parse(await readFile(join(dir, opts.nodes > 0 ? 'state.json' : 'runtime.json'), 'utf8')) as { members: { name: string; dataDir: string; dir?: string }[] };
  const memberDir = (m: string): string => layout.members.find((x) => x.name === m)?.dir ?? join(dir, 'members', m);
  const dataDir = (m: string): string => layout.members.find((x) => x.name === m)?.dataDir ?? '';
  const rounds: Round[] = [];
  for (let i = 0; i < opts.rounds; i++) {
    const members = await list();
    const lead = members.find((m) => m.role === 'leader');
    const replica = members.find((m) => m.role !== 'leader' && m.state === 'streaming');
    if (lead === undefined || replica === undefined) throw new Error(`${name}: no leader or no streaming replica`);
    const primaryPm = await postmasterPid(dataDir(lead.name));
    const oldPm = await postmasterPid(dataDir(replica.name));
    if (primaryPm === undefined || oldPm === undefined) throw new Error(`${name}: no postmaster PIDs`);
    const sampler = sampleWalsenders(primaryPm, new Set(await walsenders(primaryPm)));
    const t = now();
    const r = await warden(['reinit', replica.name, '--dir', dir], 120_000);
    if (r.code !== 0) throw new Error(`reinit ${replica.name}: ${r.stdout}\n${r.stderr}`);
    const deadline = Date.now() + 1_800_000;
    for (;;) {
      const pm = await postmasterPid(dataDir(replica.name));
      const m = (await list()).find((x) => x.name === replica.name);
      if (pm !== undefined && pm !== oldPm && m?.state === 'streaming') break;
      if (Date.now() > deadline) throw new Error(`${replica.name} did not stream again within 30 min`);
      await sleep(100);
    }
    const seconds = (now() - t) / 1000;
    const mb = (await sampler.stop()) / 1048576;
    const agentLog = await readFile(join(memberDir(replica.name), 'agent.log'), 'utf8').catch(() => '');
    const how = agentLog.lastIndexOf('replica seeded from the backup repository') > agentLog.lastIndexOf('cloning with pg_basebackup') ? 'repository' : 'pg_basebackup';
    rounds.push({ seconds, mb, how });
    log(`${name} round ${i + 1}: ${replica.name} re-created by ${how} in ${fmt(seconds, 2)} s; the primary's walsenders read ${fmt(mb, 1)} MB`);
  }
  await cleanup();
  return { rounds, dbMb };
}

await runBench(async () => {
  const m0 = machine();
  const repo = await measure('seedrepo', true);
  const bb = await measure('seedbb', false);
  const m1 = machine();
  const s = (rs: readonly Round[], f: (r: Round) => number): ReturnType<typeof summarize> => summarize(rs.map(f));
  const rows = [
    ['from the repository (spec.backups, a full backup)', repo],
    ['pg_basebackup (no backups: the reference)', bb],
  ] as const;
  process.stdout.write(`${machineLine('start', m0)}\n${machineLine('end', m1)}\n\n`);
  process.stdout.write(
    `warden reinit of a replica, 2 members${opts.nodes > 0 ? ` on ${opts.nodes} node daemons` : ''}, pgbench scale ${opts.scale}, ${opts.rounds} rounds each:\n${table(
      ['seeded', 'db MB', 'method seen', 'time median', 'time min–max', 'MB read on the primary, median', 'min–max'],
      rows.map(([label, r]) => {
        const t = s(r.rounds, (x) => x.seconds);
        const b = s(r.rounds, (x) => x.mb);
        return [label, String(r.dbMb), [...new Set(r.rounds.map((x) => x.how))].join(', '), `${fmt(t.median, 2)} s`, `${fmt(t.min, 2)}–${fmt(t.max, 2)} s`, fmt(b.median, 1), `${fmt(b.min, 1)}–${fmt(b.max, 1)}`];
      }),
    )}\n`,
  );
  const tr = s(repo.rounds, (x) => x.seconds).median / s(bb.rounds, (x) => x.seconds).median;
  const br = s(repo.rounds, (x) => x.mb).median / Math.max(0.001, s(bb.rounds, (x) => x.mb).median);
  process.stdout.write(`\nratio repository / pg_basebackup: time ${fmt(tr, 2)}, bytes from the primary ${fmt(br, 3)}\n`);
  if (repo.rounds.some((r) => r.how !== 'repository') || bb.rounds.some((r) => r.how !== 'pg_basebackup')) process.exitCode = 1;
});
