import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PgBackRestRepository, type RepositoryInfo } from '../../src/backup/index.js';
import type { BackupsOutput } from '../../src/cli/backup-commands.js';
import { lookupRunUser, readLayout } from '../../src/controller/runtime-layout.js';
import { readStateFile } from '../../src/controller/state-file.js';
import { eventually } from '../../src/core/deadline.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, sql } from '../support/cluster.js';

// spec.dataSource against real pgBackRest 2.45, PostgreSQL 15 and etcd: a new cluster ("clone")
// is bootstrapped from another cluster's ("dsrc") backup, recovered to a commit time T: it holds
// exactly the rows committed at or before T, runs a streaming replica, archives into a repository
// of its own under its own stanza, and the source's repository gets nothing from it (no WAL and
// no history file of the clone's timeline, the same sets). Bad input: exit 2 at the spec's field,
// no runtime dir made. Then Crunchy's spec.dataSource.pgbackrest: the same repository given by its
// path, the source stopped and its passwords unknown to the clone.

const SOURCE_SPEC = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: dsrc
spec:
  instances: [{ name: instance1, replicas: 1 }]
  warden: { etcd: { members: 1 } }
  patroni:
    dynamicConfiguration:
      postgresql:
        parameters:
          track_commit_timestamp: "on"
  backups:
    pgbackrest:
      repos:
        - name: repo1
          volume: {}
`;

/** A clone spec; `source` is the dataSource block's body, indented under postgresCluster. */
const cloneSpec = (source: string): string => `apiVersion: postgres-operator.crunchydata.com/v1beta1
kind: PostgresCluster
metadata:
  name: clone
spec:
  postgresVersion: 15
  instances: [{ name: instance1, replicas: 2 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      repos:
        - name: repo1
          volume: {}
  dataSource:
    postgresCluster:
${source}`;

/** Microseconds since the epoch of PostgreSQL's timestamptz text ('2026-12-02 03:04:05.12345+00'). */
function micros(ts: string): bigint {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\+00$/.exec(ts);
  assert.ok(m !== null && m[1] !== undefined && m[2] !== undefined, `timestamp ${ts}`);
  return BigInt(Date.parse(`${m[1]}T${m[2]}Z`)) * 1000n + BigInt((m[3] ?? '').padEnd(6, '0'));
}

/** Every file name under `dir`, recursively (the repository's archive). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => e.name).sort();
}

describe('spec.dataSource: a new cluster from another cluster\'s backups (real pgBackRest, PostgreSQL, etcd)', { timeout: 600_000 }, () => {
  let dir = '';
  let src = '';
  let clone = '';
  let leader = { host: '', port: 0 };
  let rows: { id: number; ts: string }[] = [];
  const started: string[] = [];
  const ROWS_SQL = "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') AS ids FROM rows";

  const writeClone = async (name: string, source: string): Promise<string> => {
    const file = join(dir, name);
    await writeFile(file, cloneSpec(source));
    return file;
  };
  const upClone = (file: string, extra: readonly string[] = ['--source-dir', src]): ReturnType<typeof runWarden> => runWarden(['up', '-f', file, '--dir', clone, ...extra], { timeoutMs: 300_000 });
  const sourceInfo = async (): Promise<RepositoryInfo> => {
    const layout = await readLayout(src);
    assert.ok(layout?.backup !== undefined);
    const identity = lookupRunUser();
    return new PgBackRestRepository({ stanza: layout.backup.stanza, configFile: layout.backup.configFile, ...(identity === undefined ? {} : { identity }) }).info({ timeoutMs: 60_000 });
  };
  /** Refused with exit 2 at `re`, and no runtime dir made for the clone. */
  const refused = async (file: string, re: RegExp, extra?: readonly string[]): Promise<void> => {
    const r = await upClone(file, extra);
    assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, re);
    assert.ok(!existsSync(clone), `${clone} was not made`);
  };

  before(async () => {
    dir = await traversableTempDir('warden-datasource-');
    src = join(dir, 'src');
    clone = join(dir, 'clone');
    await writeFile(join(dir, 'source.yaml'), SOURCE_SPEC);
  });

  after(async () => {
    for (const d of started.reverse()) await runWarden(['down', '--dir', d, '--purge'], { timeoutMs: 180_000 });
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('refuses a data source without --source-dir, in a missing dir, or with --target-action, at the field (exit 2, nothing made)', async () => {
    const ok = await writeClone('clone.yaml', '      clusterName: dsrc\n      repoName: repo1\n');
    await refused(ok, /clone\.yaml:16:7: spec\.dataSource\.postgresCluster\.clusterName: the local runtime finds cluster "dsrc" through its runtime dir: give it with --source-dir/, []);
    await refused(ok, /clone\.yaml:16:7: spec\.dataSource\.postgresCluster\.clusterName: cluster "dsrc": no local runtime in --source-dir \S+nowhere \(no runtime\.json\)/, ['--source-dir', join(dir, 'nowhere')]);
    const action = await writeClone('action.yaml', '      clusterName: dsrc\n      repoName: repo1\n      options: ["--type=time", "--target=2026-12-02 10:00:00+00", "--target-action=shutdown"]\n');
    await refused(action, /action\.yaml:18:\d+: spec\.dataSource\.postgresCluster\.options\[2\]: --target-action is set by Warden/);
    const unknown = await writeClone('unknown.yaml', '      clusterName: dsrc\n      repoName: repo1\n      options: ["--delta"]\n');
    await refused(unknown, /spec\.dataSource\.postgresCluster\.options\[0\]: --delta: not accepted here/);
    const noSource = await runWarden(['up', '--static', '--dir', clone, '--source-dir', src], { timeoutMs: 30_000 });
    assert.equal(noSource.code, 2, noSource.stderr);
    assert.match(noSource.stderr, /--source-dir names the runtime dir of the cluster in spec\.dataSource\.postgresCluster/);
  });

  it('sets up the source: refused while its repository has no backup; then rows around a backup, all archived', async () => {
    started.push(src);
    const up = await runWarden(['up', '-f', join(dir, 'source.yaml'), '--dir', src], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    const ok = await writeClone('clone.yaml', '      clusterName: dsrc\n      repoName: repo1\n');
    await refused(ok, /clone\.yaml:17:7: spec\.dataSource\.postgresCluster\.repoName: repository repo1 of cluster "dsrc" has no backup yet/);
    // Without what `warden up --source-dir` resolves, the members would bootstrap with initdb:
    // `warden apply` refuses it (here into the source's etcd), nothing stored.
    const apply = await runWarden(['apply', '-f', ok, '--dir', src], { timeoutMs: 30_000 });
    assert.equal(apply.code, 2, `${apply.stdout}\n${apply.stderr}`);
    assert.match(apply.stderr, /clone\.yaml:16:7: spec\.dataSource\.postgresCluster\.clusterName: .*`warden apply` only re-applies such a cluster\nnothing was changed/);
    const l = (await listCluster(src)).members.find((m) => m.role === 'leader');
    assert.ok(l);
    leader = { host: l.host, port: l.port };
    await sql(src, leader.host, leader.port, 'CREATE TABLE rows (id int PRIMARY KEY)');
    for (let i = 1; i <= 5; i++) await sql(src, leader.host, leader.port, 'INSERT INTO rows VALUES ($1)', [i]);
    const b = await runWarden(['backup', '--dir', src, '--type', 'full', '--wait'], { timeoutMs: 300_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    for (let i = 6; i <= 30; i++) await sql(src, leader.host, leader.port, 'INSERT INTO rows VALUES ($1)', [i]);
    const r = await sql(src, leader.host, leader.port, 'SELECT id, pg_xact_commit_timestamp(xmin)::text AS ts FROM rows ORDER BY id');
    rows = r.rows.map((x) => ({ id: Number(x['id']), ts: String(x['ts']) }));
    assert.equal(rows.length, 30);
    const last = String((await sql(src, leader.host, leader.port, 'SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0]?.['w']);
    await eventually(async () => {
      const a = await sql(src, leader.host, leader.port, 'SELECT last_archived_wal FROM pg_stat_archiver');
      return String(a.rows[0]?.['last_archived_wal']) >= last ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: `${last} archived` });
  });

  it('refuses an unknown source cluster, an unknown repository and a target before the first backup (exit 2, nothing made)', async () => {
    const other = await writeClone('other.yaml', '      clusterName: other\n      repoName: repo1\n');
    await refused(other, /other\.yaml:16:7: spec\.dataSource\.postgresCluster\.clusterName: --source-dir \S+ holds cluster "dsrc", not "other"/);
    const repo2 = await writeClone('repo2.yaml', '      clusterName: dsrc\n      repoName: repo2\n');
    await refused(repo2, /repo2\.yaml:17:7: spec\.dataSource\.postgresCluster\.repoName: cluster "dsrc" has no repository repo2 \(it has repo1\)/);
    const early = await writeClone('early.yaml', '      clusterName: dsrc\n      repoName: repo1\n      options: ["--type=time", "--target=2020-01-01 00:00:00+00"]\n');
    await refused(early, /early\.yaml:18:\d+: spec\.dataSource\.postgresCluster\.options: --target=2020-01-01 00:00:00\+00 is before the end of the first backup/);
    const now = String((await sql(src, leader.host, leader.port, 'SELECT clock_timestamp()::text AS t')).rows[0]?.['t']);
    const late = await writeClone('late.yaml', `      clusterName: dsrc\n      repoName: repo1\n      options: ["--type=time", "--target=${now}"]\n`);
    await refused(late, /late\.yaml:18:\d+: spec\.dataSource\.postgresCluster\.options: --target=\S+ \S+ is after the latest WAL in the repository/);
  });

  it('clones to a commit time T: exactly the rows committed at or before T, 2 members streaming, its own stanza and repository; the source repository gets nothing', async () => {
    const layout = await readLayout(src);
    const srcArchive = join(layout?.backup?.repos[0]?.path ?? '', 'archive');
    const filesBefore = await filesUnder(srcArchive);
    const infoBefore = await sourceInfo();
    const t = rows[17]?.ts ?? '';
    const file = await writeClone('clone.yaml', `      clusterName: dsrc\n      repoName: repo1\n      options: ["--type=time", "--target=${t}"]\n`);
    started.push(clone);
    const t0 = Date.now();
    const up = await upClone(file);
    const upMs = Date.now() - t0;
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    // A new dir gets node daemons: the controller gave each member the source's repository and set.
    assert.match(up.stdout, /3 node daemons/);
    assert.match(up.stdout, /data source: cluster dsrc \(\S+\), repo1 set \S+, recovered to /);

    const members = (await listCluster(clone)).members;
    assert.equal(members.length, 2);
    const cl = members.find((m) => m.role === 'leader');
    assert.ok(cl !== undefined && cl.state === 'running', JSON.stringify(members));
    assert.ok(members.some((m) => m.role !== 'leader' && m.state === 'streaming'), JSON.stringify(members));
    assert.ok((cl.timeline ?? 0) >= 2, `promoted onto a timeline of its own: ${cl.timeline ?? '?'}`);
    const got = String((await sql(clone, cl.host, cl.port, ROWS_SQL)).rows[0]?.['ids']);
    assert.equal(got, rows.filter((x) => micros(x.ts) <= micros(t)).map((x) => x.id).join(','));
    // The clone's own passwords (its secrets), not the source's, open it.
    await sql(clone, cl.host, cl.port, 'INSERT INTO rows VALUES (1000)');

    // Its own stanza in its own repository, archiving and backed up there.
    const b = await runWarden(['backup', '--dir', clone, '--type', 'full', '--wait'], { timeoutMs: 300_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    const backups = await runWarden(['backups', '--dir', clone, '--format', 'json'], { timeoutMs: 60_000 });
    assert.equal(backups.code, 0, backups.stderr);
    const out = JSON.parse(backups.stdout) as BackupsOutput;
    assert.equal(out.stanza, 'clone');
    assert.equal(out.backups.length, 1);
    assert.ok(out.archive !== null && Number.parseInt(out.archive.max.slice(0, 8), 16) >= (cl.timeline ?? 2), `the clone's WAL is in its repository: ${JSON.stringify(out.archive)}`);
    const cloneLayout = await readLayout(clone);
    const cloneRepo = cloneLayout?.backup?.repos[0]?.path ?? '';
    assert.notEqual(cloneRepo, layout?.backup?.repos[0]?.path);
    const tl = (cl.timeline ?? 2).toString(16).toUpperCase().padStart(8, '0');
    await eventually(async () => ((await filesUnder(join(cloneRepo, 'archive'))).some((f) => f === `${tl}.history`) ? true : undefined), { timeoutMs: 60_000, intervalMs: 500, what: `${tl}.history in the clone's repository` });

    // The source's repository: the same sets, no file of the clone's timeline, and nothing new but
    // the source's own timeline-1 WAL.
    const infoAfter = await sourceInfo();
    assert.deepEqual(infoAfter.sets.map((s) => s.label), infoBefore.sets.map((s) => s.label));
    assert.deepEqual(infoAfter.systemIds, infoBefore.systemIds);
    const filesAfter = await filesUnder(srcArchive);
    assert.ok(!filesAfter.some((f) => f.startsWith(tl)), `no WAL or history of timeline ${tl} in the source's archive`);
    assert.deepEqual(filesAfter.filter((f) => !filesBefore.includes(f) && !f.startsWith('00000001')), []);
    // pgBackRest restores the system identifier: the clone's stanza carries the source's, which is
    // why isolation is its own repository path, not a different identifier.
    const identity = lookupRunUser();
    assert.ok(cloneLayout?.backup !== undefined);
    const cloneInfo = await new PgBackRestRepository({ stanza: cloneLayout.backup.stanza, configFile: cloneLayout.backup.configFile, ...(identity === undefined ? {} : { identity }) }).info({ timeoutMs: 60_000 });
    assert.deepEqual(cloneInfo.systemIds, infoBefore.systemIds);
    // The bootstrapping agent logs what the restore and the recovery took.
    const cloneState = await readStateFile(clone);
    const logs = await Promise.all((cloneState?.members ?? []).map((m) => readFile(join(m.dir ?? '', 'agent.log'), 'utf8').catch(() => '')));
    const line = logs.join('\n').split('\n').find((x) => x.includes('"restoreMs"'));
    assert.ok(line !== undefined, 'the bootstrap logged its restore');
    const fig = JSON.parse(line) as { restoreMs: number; recoveryMs: number; set: string };
    process.stdout.write(`# clone up (restore, recovery to T, promotion, replica, stanza): ${(upMs / 1000).toFixed(1)} s; restore of ${fig.set} ${(fig.restoreMs / 1000).toFixed(1)} s, recovery to T ${(fig.recoveryMs / 1000).toFixed(1)} s\n`);
  });

  it('clones the same way on the static runtime (warden up --static): the same rows at T', async () => {
    const t = rows[9]?.ts ?? '';
    const file = join(dir, 'static.yaml');
    await writeFile(file, cloneSpec(`      clusterName: dsrc\n      repoName: repo1\n      options: ["--type=time", "--target=${t}"]\n`).replace('name: clone', 'name: sclone'));
    const rt = join(dir, 'static-clone');
    started.push(rt);
    const up = await runWarden(['up', '--static', '-f', file, '--dir', rt, '--source-dir', src], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    assert.doesNotMatch(up.stdout, /node daemons/);
    const l = (await listCluster(rt)).members.find((m) => m.role === 'leader');
    assert.ok(l !== undefined);
    const got = String((await sql(rt, l.host, l.port, ROWS_SQL)).rows[0]?.['ids']);
    assert.equal(got, rows.filter((x) => micros(x.ts) <= micros(t)).map((x) => x.id).join(','));
  });

  /** A clone spec whose source is spec.dataSource.pgbackrest: `source` is its body. */
  const repositorySpec = (name: string, source: string): string =>
    cloneSpec('').replace('name: clone', `name: ${name}`).replace('  dataSource:\n    postgresCluster:\n', `  dataSource:\n    pgbackrest:\n${source}`);

  it('refuses a pgbackrest source with no repository at its path, an unknown stanza, or --source-dir (exit 2 at the field, nothing made)', async () => {
    const repoPath = (await readLayout(src))?.backup?.repos[0]?.path ?? '';
    const target = join(dir, 'refused-clone');
    const refusedUp = async (file: string, re: RegExp, extra: readonly string[] = []): Promise<void> => {
      const r = await runWarden(['up', '-f', file, '--dir', target, ...extra], { timeoutMs: 120_000 });
      assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, re);
      assert.ok(!existsSync(target), `${target} was not made`);
    };
    const gone = join(dir, 'gone.yaml');
    await writeFile(gone, repositorySpec('rgone', `      stanza: dsrc\n      global: { repo1-path: ${join(dir, 'nowhere')} }\n      repo: { name: repo1 }\n`));
    await refusedUp(gone, /gone\.yaml:\d+:\d+: spec\.dataSource\.pgbackrest\.global\.repo1-path: no repository at /);
    const other = join(dir, 'stanza.yaml');
    await writeFile(other, repositorySpec('rother', `      stanza: other\n      global: { repo1-path: ${repoPath} }\n      repo: { name: repo1 }\n`));
    await refusedUp(other, /stanza\.yaml:\d+:\d+: spec\.dataSource\.pgbackrest\.stanza: no stanza other in the repository at /);
    await refusedUp(other, /spec\.dataSource\.pgbackrest\.stanza: --source-dir names a Warden runtime/, ['--source-dir', src]);
  });

  it('clones from a repository given by its path (spec.dataSource.pgbackrest), the source stopped and its passwords unknown: the rows at T, its own passwords, a replica streaming', async () => {
    const t = rows[19]?.ts ?? '';
    const repoPath = (await readLayout(src))?.backup?.repos[0]?.path ?? '';
    // The source no longer runs: only its repository is read.
    const down = await runWarden(['down', '--dir', src], { timeoutMs: 180_000 });
    assert.equal(down.code, 0, `${down.stdout}\n${down.stderr}`);
    const file = join(dir, 'fromrepo.yaml');
    await writeFile(file, repositorySpec('rclone', `      stanza: dsrc\n      global: { repo1-path: ${repoPath} }\n      repo: { name: repo1, volume: {} }\n      options: ["--type=time", "--target=${t}"]\n`));
    const rt = join(dir, 'repo-clone');
    started.push(rt);
    const up = await runWarden(['up', '-f', file, '--dir', rt], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    assert.match(up.stdout, new RegExp(`data source: stanza dsrc in the repository at ${repoPath} set \\S+, recovered to`));
    const l = await eventually(async () => {
      const x = await listCluster(rt);
      return x.members.length === 2 && x.members.some((m) => m.role === 'leader' && m.state === 'running') && x.members.some((m) => m.state === 'streaming') ? x : undefined;
    }, { timeoutMs: 120_000, intervalMs: 1_000, what: 'rclone: a leader and a streaming replica' });
    const leader = l.members.find((m) => m.role === 'leader');
    assert.ok(leader !== undefined);
    // Reached with rclone's own superuser password (sql() reads it from rclone's dir): set by the bootstrap.
    const got = String((await sql(rt, leader.host, leader.port, ROWS_SQL)).rows[0]?.['ids']);
    assert.equal(got, rows.filter((x) => micros(x.ts) <= micros(t)).map((x) => x.id).join(','));
    const srcPassword = (await readFile(join(src, 'secrets', 'superuser.password'), 'utf8')).trim();
    const own = (await readFile(join(rt, 'secrets', 'superuser.password'), 'utf8')).trim();
    assert.notEqual(own, srcPassword, 'the clone has passwords of its own');
    // No password-less way in was left behind: the member's pg_hba.conf is Warden's usual one.
    const state = await readStateFile(rt);
    const leaderDir = state?.members.find((m) => m.name === leader.name)?.dir;
    assert.ok(leaderDir !== undefined);
    const hba = await readFile(join(leaderDir, 'data', 'pg_hba.conf'), 'utf8');
    assert.doesNotMatch(hba, /trust/);
    assert.match(hba, /^local\s+all\s+postgres\s+peer$/m);
  });

  it('warden apply makes a cluster from the repository too (no runtime dir to resolve it from): onto the nodes of the last clone', async () => {
    const t = rows[24]?.ts ?? '';
    const repoPath = (await readLayout(src))?.backup?.repos[0]?.path ?? '';
    const file = join(dir, 'applied.yaml');
    await writeFile(file, repositorySpec('aclone', `      stanza: dsrc\n      global: { repo1-path: ${repoPath} }\n      repo: { name: repo1 }\n      options: ["--type=time", "--target=${t}"]\n`));
    const rt = join(dir, 'repo-clone');
    const a = await runWarden(['apply', '-f', file, '--dir', rt, '--wait', '--timeout', '240'], { timeoutMs: 270_000 });
    assert.equal(a.code, 0, `${a.stdout}\n${a.stderr}`);
    assert.match(a.stdout, /data source: stanza dsrc in the repository at /);
    const l = await eventually(async () => {
      const r = await runWarden(['list', '--dir', rt, '--cluster', 'aclone', '--format', 'json'], { timeoutMs: 30_000 });
      if (r.code !== 0) return undefined;
      const x = JSON.parse(r.stdout) as { members: { name: string; role: string; state: string; host: string; port: number }[] };
      return x.members.some((m) => m.role === 'leader' && m.state === 'running') ? x : undefined;
    }, { timeoutMs: 120_000, intervalMs: 1_000, what: 'aclone leading' });
    const leader = l.members.find((m) => m.role === 'leader');
    assert.ok(leader !== undefined);
    // `apply --dir` gives a new cluster the dir's passwords: sql() reads them from there.
    const got = String((await sql(rt, leader.host, leader.port, ROWS_SQL)).rows[0]?.['ids']);
    assert.equal(got, rows.filter((x) => micros(x.ts) <= micros(t)).map((x) => x.id).join(','));
  });
});

