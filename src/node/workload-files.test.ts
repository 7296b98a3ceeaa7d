import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeDataSourceRecord } from '../backup/index.js';
import type { Assignment, ClusterSecrets } from '../controller/records.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../ha/index.js';
import { parseAgentConfig, parseNodeConfig, parseRouterConfig, type NodeConfig } from '../spec/index.js';
import { adoptableFiles, memberSocketDir, prepareWorkload, workloadDir } from './workload-files.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function nodeConfig(extra = ''): Promise<NodeConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-node-'));
  dirs.push(dir);
  const r = parseNodeConfig(`name: node-1\ndir: ${dir}\netcd:\n  endpoints: [http://127.0.0.1:2379]\n${extra.replace(/DIR/g, dir)}`, 'node.yaml');
  assert.ok(r.ok);
  return r.config;
}

const secrets: ClusterSecrets = { superuser: { username: 'postgres', password: 's1' }, replication: { username: 'replicator', password: 'r1' }, restApi: { username: 'warden', password: 'a1' } };
const member = (uid = 'uid-1'): Assignment => ({ cluster: 'app', kind: 'member', name: 'app-1', node: 'node-1', clusterUid: uid, generation: 1, agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG } }, reason: 'test' });

describe('memberSocketDir', () => {
  it('keeps `run` in the member\'s directory while the socket path fits in 107 bytes, else a short one under the node dir', () => {
    assert.equal(memberSocketDir('/var/lib/warden', '/var/lib/warden/workloads/app/members/app-1', 5432), '/var/lib/warden/workloads/app/members/app-1/run');
    const node = '/var/tmp/warden-bench-replica-seed-seedrepo/nodes/node-1';
    const deep = `${node}/workloads/seedrepo/members/seedrepo-1`;
    const short = memberSocketDir(node, deep, 44427);
    assert.match(short, new RegExp(`^${node}/sockets/[0-9a-f]{12}$`));
    assert.ok(Buffer.byteLength(`${short}/.s.PGSQL.44427`) <= 107);
    assert.equal(memberSocketDir(node, deep, 44427), short, 'the same member gets the same directory');
    assert.notEqual(memberSocketDir(node, `${node}/workloads/seedrepo/members/seedrepo-2`, 44427), short, 'members do not share one');
  });
});

describe('prepareWorkload', () => {
  it('with spec.backups: a pgbackrest.conf of the member\'s own (its server, spool, lock and log) and repositories under backups.repo_path, named in its agent config', async () => {
    const cfg = await nodeConfig('backups:\n  repo_path: DIR/backup\n');
    const a = member();
    const withBackups: Assignment = { ...a, agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG }, backups: { stanza: 'app', repos: ['repo1', 'repo2'], global: { 'repo1-retention-full': '3', 'repo1-path': '/elsewhere' } } } };
    const files = await prepareWorkload(cfg, withBackups, secrets, undefined);
    const conf = await readFile(join(files.dir, 'pgbackrest.conf'), 'utf8');
    assert.match(conf, new RegExp(`^repo1-path=${join(cfg.dir, 'backup', 'app', 'repo1')}$`, 'm'));
    assert.match(conf, new RegExp(`^repo2-path=${join(cfg.dir, 'backup', 'app', 'repo2')}$`, 'm'));
    assert.match(conf, /^repo1-retention-full=3$/m);
    assert.doesNotMatch(conf, /elsewhere/, 'a repository path is Warden\'s, never the spec\'s');
    for (const k of ['lock', 'log', 'spool']) {
      assert.match(conf, new RegExp(`^${k}-path=${join(files.dir, 'pgbackrest', k)}$`, 'm'));
      assert.ok(existsSync(join(files.dir, 'pgbackrest', k)), `${k} dir made`);
    }
    assert.match(conf, new RegExp(`^pg1-path=${join(files.dir, 'data')}$`, 'm'));
    assert.match(conf, /^\[app\]$/m);
    for (const r of ['repo1', 'repo2']) assert.ok(existsSync(join(cfg.dir, 'backup', 'app', r)), `${r} made`);
    const parsed = parseAgentConfig(await readFile(files.configFile, 'utf8'), files.configFile, {}, { readPasswordFile: () => 'x\n' });
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    assert.deepEqual(parsed.config.postgres.archive, { pgbackrestConfig: join(files.dir, 'pgbackrest.conf'), stanza: 'app', createStanza: true });
    // Without spec.backups, no archiving.
    const plain = await prepareWorkload(cfg, { ...a, name: 'app-2' }, secrets, undefined);
    const parsedPlain = parseAgentConfig(await readFile(plain.configFile, 'utf8'), plain.configFile, {}, { readPasswordFile: () => 'x\n' });
    assert.ok(parsedPlain.ok);
    assert.equal(parsedPlain.config.postgres.archive, undefined);
    assert.ok(!existsSync(join(plain.dir, 'pgbackrest.conf')));
  });

  it('keeps the backups settings its files were written with in workload.json: an adopting daemon knows them, and rewriting keeps the ports', async () => {
    const cfg = await nodeConfig('backups:\n  repo_path: DIR/backup\n');
    const backups = { stanza: 'app', repos: ['repo1'], global: { 'repo1-retention-full': '2' } };
    const a: Assignment = { ...member(), agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG }, backups } };
    const first = await prepareWorkload(cfg, a, secrets, undefined);
    assert.deepEqual(first.backups, backups);
    // Adopted under an assignment that has moved on: the files' own settings, not the assignment's.
    const moved: Assignment = { ...a, agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG } } };
    assert.deepEqual((await adoptableFiles(cfg, moved))?.backups, backups);
    // Rewritten with other options: same ports, new settings in the marker and the config.
    const retention = { ...backups, global: { 'repo1-retention-full': '5' } };
    const again = await prepareWorkload(cfg, { ...a, agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG }, backups: retention } }, secrets, undefined);
    assert.equal(again.address, first.address);
    assert.deepEqual((await adoptableFiles(cfg, moved))?.backups, retention);
    assert.match(await readFile(join(again.dir, 'pgbackrest.conf'), 'utf8'), /^repo1-retention-full=5$/m);
    // Rewritten without backups: none, whatever the assignment says.
    await prepareWorkload(cfg, moved, secrets, undefined);
    assert.equal((await adoptableFiles(cfg, a))?.backups, undefined);
    // A marker from before it kept them: taken to match the assignment.
    const marker = join(again.dir, 'workload.json');
    const { backups: _b, ...old } = JSON.parse(await readFile(marker, 'utf8')) as Record<string, unknown>;
    await writeFile(marker, JSON.stringify(old));
    assert.deepEqual((await adoptableFiles(cfg, a))?.backups, backups);
  });

  it('with spec.dataSource: the source\'s repository in a pgbackrest.conf of the restore\'s own, its password and the data source file, named as the bootstrap method', async () => {
    const cfg = await nodeConfig('backups:\n  repo_path: DIR/backup\n');
    const a: Assignment = {
      ...member(),
      agent: {
        instanceSet: 'instance1',
        bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG },
        backups: { stanza: 'app', repos: ['repo1'], global: {} },
        dataSource: { sourceCluster: 'src', stanza: 'src', repo: 'repo2', repoPath: '/srv/backup/src/repo2', setLabel: '20261204-010101F', target: { kind: 'time', time: '2026-12-04 01:02:03+00', exclusive: true }, sourceSuperuserPassword: 'src-secret' },
      },
    };
    const files = await prepareWorkload(cfg, a, secrets, undefined);
    const parsed = parseAgentConfig(await readFile(files.configFile, 'utf8'), files.configFile, {}, { readPasswordFile: () => 'x\n' });
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    const file = join(files.dir, 'bootstrap', 'data-source.json');
    assert.deepEqual(parsed.config.bootstrapMethod, { kind: 'pgbackrest', dataSourceFile: file });
    const record = decodeDataSourceRecord(await readFile(file, 'utf8'));
    assert.ok(record.ok, record.ok ? '' : record.error);
    assert.deepEqual(record.value, {
      sourceCluster: 'src',
      stanza: 'src',
      configFile: join(files.dir, 'bootstrap', 'source-pgbackrest.conf'),
      repo: 2,
      setLabel: '20261204-010101F',
      target: { kind: 'time', time: '2026-12-04 01:02:03+00', exclusive: true },
      superuserPasswordFile: join(files.dir, 'secrets', 'source-superuser.password'),
    });
    assert.equal(await readFile(record.value.superuserPasswordFile, 'utf8'), 'src-secret\n');
    const conf = await readFile(record.value.configFile, 'utf8');
    assert.match(conf, /^repo2-path=\/srv\/backup\/src\/repo2$/m);
    assert.match(conf, new RegExp(`^lock-path=${join(files.dir, 'bootstrap', 'lock')}$`, 'm'));
    assert.doesNotMatch(conf, /pg1-path/, 'the source\'s config names no server: nothing is pushed through it');
    // Without a data source the member bootstraps with initdb.
    const plain = await prepareWorkload(cfg, { ...member(), name: 'app-2' }, secrets, undefined);
    const parsedPlain = parseAgentConfig(await readFile(plain.configFile, 'utf8'), plain.configFile, {}, { readPasswordFile: () => 'x\n' });
    assert.ok(parsedPlain.ok);
    assert.deepEqual(parsedPlain.config.bootstrapMethod, { kind: 'initdb' });
  });

  it('with spec.backups on a node without backups.repo_path: refused, naming the setting (archiving off would go unnoticed)', async () => {
    const cfg = await nodeConfig();
    const a: Assignment = { ...member(), agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG }, backups: { stanza: 'app', repos: ['repo1'], global: {} } } };
    await assert.rejects(prepareWorkload(cfg, a, secrets, undefined), /cluster app has spec\.backups, and node node-1 has no backups\.repo_path/);
  });

  it('with only cloud repositories: archiving on a node without backups.repo_path, the bucket in pgbackrest.conf and no repository dir made', async () => {
    const cfg = await nodeConfig();
    const storage = { type: 's3', bucket: 'bk', endpoint: 's3.example.com', region: 'eu-west-1' } as const;
    const a: Assignment = { ...member(), agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG }, backups: { stanza: 'app', repos: ['repo1'], global: { 'repo1-s3-key': 'K', 'repo1-s3-key-secret': 'S' }, cloud: [{ repo: 'repo1', storage }] } } };
    const files = await prepareWorkload(cfg, a, secrets, undefined);
    const conf = await readFile(join(files.dir, 'pgbackrest.conf'), 'utf8');
    for (const l of ['repo1-type=s3', 'repo1-s3-bucket=bk', 'repo1-s3-endpoint=s3.example.com', 'repo1-s3-region=eu-west-1', 'repo1-path=/warden/app/repo1', 'repo1-s3-key=K']) assert.ok(conf.split('\n').includes(l), `${l} in\n${conf}`);
    assert.ok(!existsSync(join(cfg.dir, 'backup')), 'no posix repository dir');
    // A posix repository beside it still needs the node's setting.
    const mixed: Assignment = { ...a, name: 'app-2', agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG }, backups: { stanza: 'app', repos: ['repo1', 'repo2'], global: {}, cloud: [{ repo: 'repo1', storage }] } } };
    await assert.rejects(prepareWorkload(cfg, mixed, secrets, undefined), /node node-1 has no backups\.repo_path/);
  });

  it('writes an agent config the agent reads back, with the cluster passwords in 0600 files', async () => {
    const cfg = await nodeConfig();
    const files = await prepareWorkload(cfg, member(), secrets, undefined);
    const text = await readFile(files.configFile, 'utf8');
    const parsed = parseAgentConfig(text, files.configFile, {}, { readPasswordFile: (p) => (p.endsWith('superuser.password') ? 's1\n' : p.endsWith('replication.password') ? 'r1\n' : 'a1\n') });
    assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.errors));
    assert.equal(parsed.config.name, 'app-1');
    assert.equal(parsed.config.cluster, 'app');
    assert.equal(parsed.config.postgres.dataDir, join(files.dir, 'data'));
    assert.match(files.address, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await readFile(join(files.dir, 'secrets', 'replication.password'), 'utf8')).trim(), 'r1');
  });

  it('keeps the ports of workloads prepared at the same time: each is recorded, none shared, each recreated on its own', async () => {
    const cfg = await nodeConfig();
    // A node daemon starts every workload of a pass at once; each read-modify-writes ports.json.
    const assignments: Assignment[] = [{ ...member(), name: 'app-1' }, { ...member(), name: 'app-3' }, { cluster: 'app', kind: 'router', name: 'app-router-1', node: 'node-1', clusterUid: 'uid-1', generation: 1, reason: 'test' }];
    const first = await Promise.all(assignments.map((a) => prepareWorkload(cfg, a, secrets, undefined)));
    const book = JSON.parse(await readFile(join(cfg.dir, 'ports.json'), 'utf8')) as Record<string, number[]>;
    assert.deepEqual(Object.keys(book).sort(), ['app/members/app-1', 'app/members/app-3', 'app/routers/app-router-1']);
    const all = Object.values(book).flat();
    assert.equal(new Set(all).size, all.length, `a port is shared: ${JSON.stringify(book)}`);
    for (const f of first) await rm(f.dir, { recursive: true });
    const again = await Promise.all(assignments.map((a) => prepareWorkload(cfg, a, secrets, undefined)));
    assert.deepEqual(again.map((f) => f.address), first.map((f) => f.address));
  });

  it('recreates a deleted directory on the same ports', async () => {
    const cfg = await nodeConfig();
    const first = await prepareWorkload(cfg, member(), secrets, undefined);
    await rm(first.dir, { recursive: true });
    const again = await prepareWorkload(cfg, member(), secrets, undefined);
    assert.ok(existsSync(again.configFile));
    assert.equal(again.address, first.address);
    assert.deepEqual(again.notes, [`created ${again.dir}`]);
  });

  it('moves aside, never deletes, a directory that holds another cluster\'s data', async () => {
    const cfg = await nodeConfig();
    const old = await prepareWorkload(cfg, member('uid-old'), secrets, undefined);
    await writeFile(join(old.dir, 'precious'), 'data');
    const fresh = await prepareWorkload(cfg, member('uid-new'), secrets, undefined);
    assert.match(fresh.notes[0] ?? '', /moved .* aside .*another cluster's data \(uid uid-old\)/);
    const aside = await readdir(join(cfg.dir, 'moved-aside'));
    assert.equal(aside.length, 1);
    assert.equal(await readFile(join(cfg.dir, 'moved-aside', aside[0] ?? '', 'precious'), 'utf8'), 'data');
    assert.equal(existsSync(join(fresh.dir, 'precious')), false);
  });

  it('moves aside a directory of unknown origin (no workload.json) instead of using it', async () => {
    const cfg = await nodeConfig();
    const dir = workloadDir(cfg.dir, member());
    await mkdir(join(dir, 'data'), { recursive: true });
    await writeFile(join(dir, 'data', 'PG_VERSION'), '15\n');
    const files = await prepareWorkload(cfg, member(), secrets, undefined);
    assert.match(files.notes[0] ?? '', /files of unknown origin/);
    assert.equal(existsSync(join(files.dir, 'data', 'PG_VERSION')), false);
    const [aside] = await readdir(join(cfg.dir, 'moved-aside'));
    assert.equal(existsSync(join(cfg.dir, 'moved-aside', aside ?? '', 'data', 'PG_VERSION')), true);
  });

  it('refuses a member whose cluster has no secrets yet, and writes a router config the router reads back', async () => {
    const cfg = await nodeConfig();
    await assert.rejects(prepareWorkload(cfg, member(), undefined, undefined), /no secrets for cluster app/);
    const router: Assignment = { cluster: 'app', kind: 'router', name: 'app-router-1', node: 'node-1', clusterUid: 'uid-1', generation: 1, reason: 'test' };
    const files = await prepareWorkload(cfg, router, undefined, undefined);
    assert.equal(files.dir, workloadDir(cfg.dir, router));
    const parsed = parseRouterConfig(await readFile(files.configFile, 'utf8'), files.configFile, {});
    assert.ok(parsed.ok);
    assert.equal(`${parsed.config.listen.rw.host}:${parsed.config.listen.rw.port}`, files.address);
  });
});
