import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { isProcessAlive, signalPid } from '../../src/core/process-info.js';
import type { StateFile } from '../../src/controller/state-file.js';
import type { ListOutput } from '../../src/cli/list.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { api, patroni, postmasterPid, processTree, readState, sql } from '../support/cluster.js';

// One cluster for the whole file: `warden up` takes ~10 s, and each scenario leaves it healthy.
describe('the local runtime (warden up / list / down) with real etcd and PostgreSQL', { timeout: 600_000 }, () => {
  let dir = '';
  let state: StateFile;
  const frozen: number[] = [];

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    return l.members.length === 3 && leaders.length === 1 && streaming.length === 2 && new Set(l.members.map((m) => m.timeline)).size === 1 ? l : undefined;
  };
  const leaderOf = (l: ListOutput) => {
    const m = l.members.find((x) => x.role === 'leader');
    assert.ok(m, 'a leader');
    return m;
  };

  before(async () => {
    dir = await traversableTempDir('warden-it-');
  });

  after(async () => {
    for (const pid of frozen) signalPid(pid, 'SIGCONT');
    if (dir !== '') {
      await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('brings up a 3-member cluster with one command and records it in state.json', async () => {
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /cluster is healthy/);
    assert.match(r.stdout, /psql "host=127\.0\.0\.1 port=\d+ user=postgres/);
    state = await readState(dir);
    assert.equal(state.cluster, 'demo');
    assert.equal(state.etcd.length, 3);
    assert.equal(state.superuser, 'postgres');
    assert.ok(existsSync(state.pgpassFile));
    assert.deepEqual(state.members.map((m) => m.name), ['demo-1', 'demo-2', 'demo-3']);
    for (const m of state.members) {
      assert.match(m.apiUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(m.host, '127.0.0.1');
      assert.ok(m.port > 0 && m.dataDir.startsWith(dir) && typeof m.agentPid === 'number');
    }
    // The router is started by default; test/router/ covers what it does.
    assert.ok(state.router !== null && state.router.rw.port > 0 && state.router.ro.port > 0, 'state.json records the router');
  });

  it('lists one leader and two streaming replicas with the system identifier', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    assert.equal(l.cluster, 'demo');
    assert.match(l.systemIdentifier ?? '', /^\d+$/);
    for (const m of l.members) {
      assert.ok(['leader', 'replica'].includes(m.role));
      assert.equal(typeof m.reason?.code, 'string');
      assert.ok(m.lagBytes !== null && m.lagBytes >= 0);
    }
    const text = await runWarden(['list', '--dir', dir, '-e'], { timeoutMs: 15_000 });
    assert.match(text.stdout, /Cluster: demo \(\d+\)/);
    assert.match(text.stdout, /leader-healthy/);
  });

  it('answers Patroni-compatible health checks and serves metrics', async () => {
    const l = await list();
    const leader = leaderOf(l);
    const replica = l.members.find((m) => m.role === 'replica')!;
    assert.equal((await api(leader.apiUrl, '/primary'))?.status, 200);
    assert.equal((await api(replica.apiUrl, '/primary'))?.status, 503);
    assert.equal((await api(replica.apiUrl, '/replica'))?.status, 200);
    assert.equal((await api(leader.apiUrl, '/replica'))?.status, 503);
    assert.equal((await api(replica.apiUrl, '/read-only'))?.status, 200);
    assert.equal((await api(leader.apiUrl, '/health', 'HEAD'))?.status, 200);
    assert.equal((await api(leader.apiUrl, '/leader', 'OPTIONS'))?.status, 200);
    assert.equal((await api(replica.apiUrl, '/liveness'))?.status, 200);
    assert.equal((await api(replica.apiUrl, '/readiness'))?.status, 200);
    const p = await patroni(leader.apiUrl);
    assert.equal(p?.role, 'primary');
    assert.equal((p?.warden as { reason?: { code?: string } }).reason?.code, 'leader-healthy');
    const metrics = await api(replica.apiUrl, '/metrics');
    assert.match(metrics?.body ?? '', /warden_is_leader\{cluster="demo",member="demo-\d"\} 0/);
    assert.match((await api(leader.apiUrl, '/cluster'))?.body ?? '', /"role":"leader"/);
    assert.match((await api(leader.apiUrl, '/config'))?.body ?? '', /"loop_wait":0\.5/);
    assert.equal((await api(leader.apiUrl, '/no-such-thing'))?.status, 404);
  });

  it('reports the running cluster on a second up', async () => {
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /already running/);
  });

  it('refuses a second agent that claims an existing member name', async () => {
    const cfg = join(dir, 'members', 'demo-1', 'agent.yaml');
    const r = await runWarden(['agent', '--config', cfg], { timeoutMs: 30_000, env: { WARDEN_RESTAPI_LISTEN: '127.0.0.1:1', WARDEN_PG_LISTEN: '127.0.0.1:2', WARDEN_LOG_FILE: join(dir, 'dup.log') } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already in use/);
  });

  it('restarts PostgreSQL in place when it crashes on the primary: same leader, same timeline', async () => {
    const before = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const leader = leaderOf(before);
    const member = state.members.find((m) => m.name === leader.name)!;
    const pm = await postmasterPid(member.dataDir);
    assert.ok(pm !== undefined);
    signalPid(pm, 'SIGKILL');
    await eventually(async () => !(await isProcessAlive(pm)) || undefined, { timeoutMs: 10_000, what: 'the postmaster to die' });
    const afterCrash = await eventually(async () => {
      const l = await healthy();
      return l !== undefined && (await postmasterPid(member.dataDir)) !== pm ? l : undefined;
    }, { timeoutMs: 90_000, what: 'PostgreSQL restarted in place' });
    assert.equal(leaderOf(afterCrash).name, leader.name);
    assert.equal(leaderOf(afterCrash).timeline, leader.timeline);
  });

  it('fails over when the primary node freezes, and the old primary rejoins as a replica after it thaws', async () => {
    const before = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const old = leaderOf(before);
    await sql(dir, old.host, old.port, 'CREATE TABLE IF NOT EXISTS it_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    await sql(dir, old.host, old.port, 'INSERT INTO it_writes DEFAULT VALUES');
    const member = state.members.find((m) => m.name === old.name)!;
    const cur = await readState(dir);
    const agentPid = cur.members.find((m) => m.name === old.name)!.agentPid!;
    const pids = [...(await processTree(agentPid))];
    const pm = await postmasterPid(member.dataDir);
    if (pm !== undefined && !pids.includes(pm)) pids.push(...(await processTree(pm)));
    frozen.push(...pids);
    for (const pid of pids) signalPid(pid, 'SIGSTOP');

    const others = before.members.filter((m) => m.name !== old.name);
    const writer = await eventually(async () => {
      for (const m of others) {
        try {
          await sql(dir, m.host, m.port, 'INSERT INTO it_writes DEFAULT VALUES');
          return m;
        } catch {
          // not writable (yet)
        }
      }
      return undefined;
    }, { timeoutMs: 60_000, intervalMs: 100, what: 'a new primary accepting writes' });
    const mid = await list();
    assert.equal(leaderOf(mid).name, writer.name);
    assert.ok((leaderOf(mid).timeline ?? 0) > (old.timeline ?? 0), 'promotion starts a new timeline');

    for (const pid of pids) signalPid(pid, 'SIGCONT');
    frozen.length = 0;
    const healed = await eventually(healthy, { timeoutMs: 120_000, what: 'the old primary streaming again' });
    assert.equal(leaderOf(healed).name, writer.name);
    const oldNow = healed.members.find((m) => m.name === old.name)!;
    assert.equal(oldNow.role, 'replica');
    assert.equal(oldNow.state, 'streaming');
    const inRecovery = await sql(dir, oldNow.host, oldNow.port, 'SELECT pg_is_in_recovery() AS r');
    assert.equal(inRecovery.rows[0]?.r, true);
    const n = await sql(dir, writer.host, writer.port, 'SELECT count(*)::int AS n FROM it_writes');
    assert.ok((n.rows[0]?.n as number) >= 2);
  });

  it('fails over when the primary agent is killed, and the supervisor brings the member back as a replica', async () => {
    const before = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const old = leaderOf(before);
    const cur = await readState(dir);
    const agentPid = cur.members.find((m) => m.name === old.name)!.agentPid!;
    signalPid(agentPid, 'SIGKILL');
    const next = await eventually(async () => {
      const l = await list();
      const lead = l.members.find((m) => m.role === 'leader' && m.state === 'running');
      return lead !== undefined && lead.name !== old.name ? lead : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200, what: 'a new leader' });
    // The leader key can name it a moment before its promotion has finished: poll for the write.
    await eventually(async () => {
      await sql(dir, next.host, next.port, 'INSERT INTO it_writes DEFAULT VALUES');
      return true;
    }, { timeoutMs: 30_000, intervalMs: 100, what: 'a write on the new leader' });
    const healed = await eventually(healthy, { timeoutMs: 120_000, what: 'the killed member back as a streaming replica' });
    assert.equal(healed.members.find((m) => m.name === old.name)?.role, 'replica');
    const after = await readState(dir);
    assert.notEqual(after.members.find((m) => m.name === old.name)?.agentPid, agentPid);
  });

  it('stops everything it started on down, and says so when nothing runs', async () => {
    const cur = await readState(dir);
    const r = await runWarden(['down', '--dir', dir], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    for (const pid of [...cur.members.map((m) => m.agentPid), ...(cur.etcdPids ?? [])]) {
      if (typeof pid === 'number') assert.equal(await isProcessAlive(pid), false, `pid ${pid} still alive`);
    }
    for (const m of cur.members) {
      const pm = await postmasterPid(m.dataDir);
      if (pm !== undefined) assert.equal(await isProcessAlive(pm), false, `postmaster ${pm} still alive`);
    }
    const again = await runWarden(['down', '--dir', dir], { timeoutMs: 30_000 });
    assert.equal(again.code, 0);
    assert.match(again.stdout, /nothing running/);
  });
});

describe('warden up: bad input', () => {
  it('exits 2 with file:line:col and the field for an invalid spec, and starts nothing', async () => {
    const dir = await traversableTempDir('warden-bad-');
    try {
      const spec = join(dir, 'cluster.yaml');
      await writeFile(spec, 'apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: demo\nspec:\n  instances:\n    - replicas: 3\n  patroni:\n    dynamicConfiguration:\n      tll: 5\n');
      const r = await runWarden(['up', '--static', '-f', spec, '--dir', join(dir, 'rt')], { timeoutMs: 30_000 });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /cluster\.yaml:10:7: spec\.patroni\.dynamicConfiguration\.tll: .*ttl/);
      assert.equal(existsSync(join(dir, 'rt')), false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says there is nothing to stop in an empty dir, exit 0', async () => {
    const dir = await traversableTempDir('warden-empty-');
    try {
      const r = await runWarden(['down', '--dir', dir], { timeoutMs: 30_000 });
      assert.equal(r.code, 0);
      assert.match(r.stdout, /nothing to stop/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the missing cluster when list has no state.json', async () => {
    const dir = await traversableTempDir('warden-nolist-');
    try {
      const r = await runWarden(['list', '--dir', dir], { timeoutMs: 30_000 });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no cluster found in .*warden-nolist-/);
      const r2 = await runWarden(['list', '--etcd', 'http://127.0.0.1:1', '--cluster', 'x'], { timeoutMs: 30_000 });
      assert.equal(r2.code, 1);
      assert.match(r2.stderr, /cannot read cluster "x" from etcd at http:\/\/127\.0\.0\.1:1/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
