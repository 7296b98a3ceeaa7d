import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BackupsOutput, RestoreDrillOutput } from '../../src/cli/backup-commands.js';
import type { ListOutput } from '../../src/cli/list.js';
import { eventually } from '../../src/core/deadline.js';
import { freePorts } from '../../src/core/free-port.js';
import { isProcessAlive, signalPid } from '../../src/core/process-info.js';
import { REPO, runWarden } from '../support/cli.js';
import { sql } from '../support/cluster.js';
import { NodesRuntimeUnderTest } from '../support/nodes-runtime.js';
import { makePems } from '../support/tls.js';

// A cloud repository (spec.backups.pgbackrest.repos[].s3, the operators' shape) against real
// pgBackRest 2.45, PostgreSQL 15 and etcd, with an S3-compatible server on loopback (s3rver, over
// TLS with a CA of the test's, which pgBackRest verifies through repo1-storage-ca-file; the endpoint
// is `localhost` because pgBackRest 2.45 matches only DNS names of a certificate, not IP ones): every
// member archives into the bucket from the first minute, the leader's agent creates the stanza
// there, a backup is taken from a standby, a failover keeps archiving (the new primary pushes its
// timeline), and a restore drill recovers the rows from the bucket. Nothing of the repository is
// on the nodes' file system.

describe('an s3 repository (real pgBackRest, PostgreSQL, etcd; an S3-compatible server on loopback)', { timeout: 900_000 }, () => {
  const rt = new NodesRuntimeUnderTest();
  let s3: ChildProcess | undefined;
  let s3Port = 0;
  let s3Data = '';
  let startS3 = (): void => undefined;
  const stopS3 = async (): Promise<void> => {
    const pid = s3?.pid;
    if (pid === undefined || !(await isProcessAlive(pid))) return;
    const exited = new Promise((r) => s3?.once('exit', r));
    signalPid(pid, 'SIGKILL');
    await exited;
  };

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    return l.members.length === 3 && leaders.length === 1 && l.members.filter((m) => m.state === 'streaming').length === 2 ? l : undefined;
  };
  const backups = async (): Promise<BackupsOutput> => {
    const r = await runWarden(['backups', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout) as BackupsOutput;
  };
  /** Object names under `prefix` in the S3 server's store (s3rver keeps each object as a file beside its metadata). */
  const objects = async (prefix: string): Promise<string[]> => {
    const entries = await readdir(join(s3Data, 'wbk', prefix), { recursive: true }).catch(() => [] as string[]);
    return entries.filter((e) => e.endsWith('._S3rver_object')).map((e) => e.slice(0, -'._S3rver_object'.length));
  };

  before(async () => {
    await rt.create('warden-cloud-s3-');
    const pems = await makePems(rt.dir);
    // The S3 server's certificate names localhost (signed by the test CA).
    const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: pems.dir, stdio: 'pipe', timeout: 30_000 });
    await writeFile(join(pems.dir, 's3.ext'), 'subjectAltName=DNS:localhost\n');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 's3.key', '-out', 's3.csr');
    ssl('x509', '-req', '-in', 's3.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 's3.ext', '-out', 's3.pem');
    // pgBackRest connects to the first address localhost resolves to (127.0.0.1, or ::1 where /etc/hosts puts it first): the server listens there, on loopback only.
    const address = (await lookup('localhost')).address;
    s3Port = (await freePorts(1))[0] ?? assert.fail('a free port');
    s3Data = join(rt.dir, 's3');
    startS3 = (): void => {
      s3 = spawn(process.execPath, [join(REPO, 'node_modules', 's3rver', 'bin', 's3rver.js'), '-d', s3Data, '-a', address, '-p', String(s3Port), '--key', join(pems.dir, 's3.key'), '--cert', join(pems.dir, 's3.pem'), '--configure-bucket', 'wbk', '--silent'], { stdio: 'ignore' });
    };
    startS3();
    await eventually(
      () =>
        new Promise<true | undefined>((resolve) => {
          const c = connect(s3Port, address, () => {
            c.destroy();
            resolve(true);
          });
          c.on('error', () => resolve(undefined));
        }),
      { timeoutMs: 30_000, what: 'the S3 server listening' },
    );
    await writeFile(
      join(rt.dir, 's3c.yaml'),
      `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: s3c
spec:
  instances: [{ name: instance1, replicas: 3 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global:
        repo1-s3-key: S3RVER
        repo1-s3-key-secret: S3RVER
        repo1-s3-uri-style: path
        repo1-storage-port: ${s3Port}
        repo1-storage-ca-file: ${join(pems.dir, 'ca.pem')}
      repos:
        - name: repo1
          s3: { bucket: wbk, endpoint: localhost, region: us-east-1 }
`,
    );
  });

  after(async () => {
    await rt.cleanup();
    await stopS3();
  });

  it('archives every member into the bucket from the first minute, with the stanza made by the leader\'s agent', async () => {
    const r = await runWarden(['up', '-f', join(rt.dir, 's3c.yaml'), '--dir', rt.runtime], { timeoutMs: 400_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /backups: stanza s3c ready; WAL is archived to s3:\/\/wbk\/warden\/s3c\/repo1 \(localhost\)/);
    await rt.state();
    await eventually(() => healthy(), { timeoutMs: 60_000, what: 's3c healthy' });
    const stored = await objects('warden/s3c/repo1');
    assert.ok(stored.some((o) => o.endsWith('archive/s3c/archive.info')) && stored.some((o) => o.endsWith('backup/s3c/backup.info')), stored.join('\n'));
    assert.ok(stored.some((o) => /archive\/s3c\/15-1\/0000000100000000\/\w{24}-\w{40}/.test(o)), `a WAL segment in the bucket:\n${stored.join('\n')}`);
    // `warden up` again without -f keeps the spec applied last (it once applied a default one: 3
    // members and no backups, so archiving was turned off), and checks archiving again.
    const again = await runWarden(['up', '--dir', rt.runtime], { timeoutMs: 400_000 });
    assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
    assert.match(again.stdout, /spec unchanged \(generation 1\): nothing stored/);
    assert.doesNotMatch(again.stdout, /archiving turns off/);
    assert.match(again.stdout, /backups: stanza s3c ready/);
  });

  it('takes a backup from a standby into the bucket and lists it with its recoverable window', async () => {
    const l = await list();
    const lead = l.members.find((m) => m.role === 'leader');
    assert.ok(lead !== undefined);
    await sql(rt.runtime, lead.host, lead.port, 'CREATE TABLE s3rows AS SELECT generate_series(1, 5000) AS i');
    const t = Date.now();
    const b = await runWarden(['backup', '--dir', rt.runtime, '--type', 'full', '--wait'], { timeoutMs: 600_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    const from = /full backup \S+ from (s3c-\d)/.exec(b.stdout)?.[1];
    assert.ok(from !== undefined && from !== lead.name, `a backup from a standby, not the leader ${lead.name}: ${b.stdout}`);
    process.stdout.write(`# full backup into s3 (loopback): ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
    const out = await backups();
    assert.equal(out.backups.length, 1, JSON.stringify(out.backups));
    assert.ok(out.recoverableWindow.earliest !== null && out.recoverableWindow.latest !== null, JSON.stringify(out.recoverableWindow));
    const label = out.backups[0]?.label ?? '';
    assert.ok((await objects('warden/s3c/repo1')).some((o) => o.includes(`backup/s3c/${label}/backup.manifest`)), `set ${label} in the bucket`);
  });

  it('keeps archiving into the bucket across a failover, and a restore drill recovers the rows from it', async () => {
    const l = await list();
    const lead = l.members.find((m) => m.role === 'leader');
    assert.ok(lead !== undefined);
    const st = await rt.state();
    const agentPid = st.members.find((m) => m.name === lead.name)?.agentPid;
    assert.ok(typeof agentPid === 'number');
    signalPid(agentPid, 'SIGKILL');
    const after1 = await eventually(async () => {
      const x = await list();
      const n = x.members.find((m) => m.role === 'leader' && m.state === 'running');
      return n !== undefined && n.name !== lead.name ? n : undefined;
    }, { timeoutMs: 120_000, intervalMs: 1_000, what: 'a new leader' });
    await sql(rt.runtime, after1.host, after1.port, 'INSERT INTO s3rows SELECT generate_series(5001, 6000)');
    await sql(rt.runtime, after1.host, after1.port, 'SELECT pg_switch_wal()');
    // The new timeline's history file and WAL reach the bucket, and the archive is not failing.
    await eventually(async () => ((await objects('warden/s3c/repo1')).some((o) => /archive\/s3c\/15-1\/00000002\.history/.test(o)) ? true : undefined), { timeoutMs: 120_000, intervalMs: 1_000, what: 'timeline 2 in the bucket' });
    const rp = await eventually(async () => {
      const o = await backups();
      return 'failing' in o.recoveryPoint && o.recoveryPoint.primary === after1.name && o.recoveryPoint.lastArchivedWal?.startsWith('00000002') === true ? o.recoveryPoint : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2_000, what: `${after1.name} archiving timeline 2` });
    assert.ok('failing' in rp && !rp.failing, JSON.stringify(rp));
    const drill = await runWarden(['restore-drill', '--dir', rt.runtime, '--format', 'json', '--check-sql', 'SELECT count(*) FROM s3rows'], { timeoutMs: 600_000 });
    assert.equal(drill.code, 0, `${drill.stdout}\n${drill.stderr}`);
    const d = JSON.parse(drill.stdout) as RestoreDrillOutput;
    process.stdout.write(`# restore drill from s3 (loopback): ${JSON.stringify(d)}\n`);
    assert.equal(d.check.value, '6000', 'the rows from before the backup and from after the failover, replayed from the bucket');
    assert.equal(d.timeline > 2, true, `the drill promotes past timeline 2: ${d.timeline}`);
  });

  it('reports a failing archive while the bucket is unreachable, without a failover, and catches up when it is back', async () => {
    const l = await list();
    const lead = l.members.find((m) => m.role === 'leader');
    assert.ok(lead !== undefined);
    await stopS3();
    let restarted = false;
    try {
      await sql(rt.runtime, lead.host, lead.port, 'INSERT INTO s3rows SELECT generate_series(6001, 6100)');
      await sql(rt.runtime, lead.host, lead.port, 'SELECT pg_switch_wal()');
      const failing = await eventually(async () => {
        const x = await list();
        return x.archive !== null && 'failing' in x.archive && x.archive.failing ? x : undefined;
      }, { timeoutMs: 240_000, intervalMs: 2_000, what: 'warden list reporting the archive failing' });
      assert.equal(failing.members.find((m) => m.role === 'leader')?.name, lead.name, 'no failover for a failing archive');
      // warden backups cannot read the bucket: it says so in the sets' place, still reports the recovery point, and exits 1.
      const t = Date.now();
      const r = await runWarden(['backups', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 120_000 });
      const tookMs = Date.now() - t;
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      const behind = JSON.parse(r.stdout) as BackupsOutput;
      assert.match(behind.status.message, /^the repository cannot be read: /);
      assert.deepEqual(behind.backups, []);
      assert.ok('bytesNotArchived' in behind.recoveryPoint && (behind.recoveryPoint.bytesNotArchived ?? 0) > 0 && behind.recoveryPoint.failing, JSON.stringify(behind.recoveryPoint));
      process.stdout.write(`# warden backups with the bucket unreachable: ${(tookMs / 1000).toFixed(1)} s, ${behind.status.message.slice(0, 200)}\n`);
      process.stdout.write(`# bucket unreachable: ${'line' in (failing.archive ?? {}) ? (failing.archive as { line: string }).line : ''}; recovery point ${JSON.stringify(behind.recoveryPoint)}\n`);
      startS3();
      restarted = true;
      await eventually(async () => {
        const o = await backups();
        return 'failing' in o.recoveryPoint && !o.recoveryPoint.failing && (o.recoveryPoint.bytesNotArchived ?? Infinity) < 16 * 1024 * 1024 ? true : undefined;
      }, { timeoutMs: 180_000, intervalMs: 2_000, what: 'the archive caught up with the bucket back' });
      assert.equal((await list()).members.find((m) => m.role === 'leader')?.name, lead.name);
    } finally {
      // The next case needs the bucket whatever happened here.
      if (!restarted) startS3();
    }
  });

  it('makes a new cluster from the bucket (spec.dataSource.postgresCluster), which archives into a repository of its own', async () => {
    await writeFile(
      join(rt.dir, 'clone.yaml'),
      `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: s3clone
spec:
  instances: [{ name: instance1, replicas: 1 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      repos:
        - name: repo1
          volume: {}
  dataSource:
    postgresCluster:
      clusterName: s3c
      repoName: repo1
`,
    );
    const cloneDir = join(rt.dir, 'clone');
    const before1 = (await objects('warden/s3c/repo1')).length;
    const up = await runWarden(['up', '-f', join(rt.dir, 'clone.yaml'), '--dir', cloneDir, '--source-dir', rt.runtime], { timeoutMs: 400_000 });
    try {
      assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
      const l = await eventually(async () => {
        const r = await runWarden(['list', '--dir', cloneDir, '--format', 'json'], { timeoutMs: 30_000 });
        const x = JSON.parse(r.stdout) as ListOutput;
        return x.members.find((m) => m.role === 'leader' && m.state === 'running');
      }, { timeoutMs: 120_000, what: 's3clone running' });
      const rows = await sql(cloneDir, l.host, l.port, 'SELECT count(*)::int AS n FROM s3rows');
      assert.equal(rows.rows[0]?.['n'], 6100, 'every row archived into the bucket, those of the outage too');
      // The clone archives into its own posix repository; the source's bucket gets nothing of the clone's.
      await sql(cloneDir, l.host, l.port, 'SELECT pg_switch_wal()');
      const own = await readdir(join(cloneDir, 'backup', 's3clone', 'repo1', 'archive', 's3clone'), { recursive: true }).catch(() => [] as string[]);
      await eventually(async () => ((await readdir(join(cloneDir, 'backup', 's3clone', 'repo1', 'archive', 's3clone'), { recursive: true }).catch(() => [] as string[])).some((f) => f.endsWith('.history')) ? true : undefined), { timeoutMs: 60_000, what: `the clone's history file in its own repository (had ${own.length} entries)` });
      const stored = await objects('warden/s3c/repo1');
      assert.ok(!stored.some((o) => o.includes('s3clone')), 'nothing of the clone in the source bucket');
      assert.ok(stored.length >= before1);
    } finally {
      await runWarden(['down', '--dir', cloneDir, '--purge'], { timeoutMs: 240_000 });
    }
  });
});
