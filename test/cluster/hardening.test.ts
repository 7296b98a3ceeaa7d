import { etcdClientFromState } from '../../src/controller/state-file.js';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, holdsFor } from '../../src/core/deadline.js';
import { isProcessAlive, signalPid, waitForExit } from '../../src/core/process-info.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import type { ListOutput } from '../../src/cli/list.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, patroni, readState, sql } from '../support/cluster.js';

// What a hostile new user broke in one afternoon ("Hardening"), against one real cluster: each case
// failed before its fix.

/** Sends raw bytes to host:port and returns the first answer (or '' when the server closed). */
function raw(host: string, port: number, bytes: string, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let got = '';
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(done, waitMs);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) done();
    });
    s.on('error', done);
    s.on('close', done);
    s.end(bytes);
  });
}

describe('hardening against hostile input (real cluster)', { timeout: 900_000 }, () => {
  let dir = '';
  let auth = '';
  let etcd: EtcdClient | undefined;

  const list = (): Promise<ListOutput> => listCluster(dir);
  const healthy = async (): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    return leaders.length === 1 && streaming.length === l.members.length - 1 ? l : undefined;
  };
  const leaderOf = (l: ListOutput) => l.members.find((m) => m.role === 'leader')!;
  const historyLength = async (): Promise<number> => {
    const h = await runWarden(['history', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    return (JSON.parse(h.stdout) as unknown[]).length;
  };
  const authHeader = (): string => `Basic ${Buffer.from(`warden:${auth}`).toString('base64')}`;

  before(async () => {
    dir = await traversableTempDir('warden-hard-');
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    auth = (await readFile(join(dir, 'secrets', 'restapi.password'), 'utf8')).trim();
    await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    etcd = etcdClientFromState(await readState(dir), 2000);
  });

  after(async () => {
    etcd?.close();
    if (dir !== '') {
      await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('row 1: a request target WHATWG URL rejects gets an answer and kills nothing (agent and router admin)', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const lead = leaderOf(l);
    const api = new URL(lead.apiUrl);
    const before = await historyLength();
    for (let i = 0; i < 20; i++) {
      const answer = await raw(api.hostname, Number(api.port), 'GET //a:99999/x HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.match(answer, /^HTTP\/1\.1 (400|404) /);
    }
    const evil = await raw(api.hostname, Number(api.port), 'GET //evil/config HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(evil, /^HTTP\/1\.1 404 /);
    const state = await readState(dir);
    const admin = state.router?.admin;
    assert.ok(admin !== undefined, 'the local runtime starts a router with an admin port');
    assert.match(await raw(admin.host, admin.port, 'GET //a:99999/x HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 (400|404) /);
    assert.equal((await patroni(lead.apiUrl))?.warden?.isLeader, true, 'the leader is still up and leading');
    assert.match(await raw(admin.host, admin.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 200 /);
    assert.equal(await historyLength(), before, 'no failover');
  });

  it('rows 2 and 4: out-of-range timings and invalid PostgreSQL values are refused and change nothing', async () => {
    const before = await runWarden(['show-config', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    const cases: ReadonlyArray<[string[], RegExp]> = [
      [['--set', 'ttl=100000000'], /ttl: must be a number > 0 and ≤ 3600/],
      [['--set', 'ttl=1e308'], /ttl: must be a number > 0 and ≤ 3600/],
      [['--pg', 'max_connections=-1'], /-1 is outside the valid range for parameter "max_connections"/],
      [['--pg', 'max_connections=abc'], /invalid value for parameter "max_connections": "abc"/],
      [['--pg', 'work_mem=4MB\nfsync=off'], /control characters/],
      [['--pg', 'port=6000'], /port: set by Warden for each member; it cannot be set cluster-wide/],
      [['--set', 'synchronous_mode=on', '--set', 'synchronous_node_count=50'], /synchronous_node_count: 50 is more than the cluster's 2 replica\(s\)/],
    ];
    for (const [args, why] of cases) {
      const r = await runWarden(['edit-config', '--dir', dir, ...args, '--force'], { timeoutMs: 15_000 });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, why);
    }
    const lead = leaderOf(await list());
    const patch = await fetch(new URL('/config', lead.apiUrl), { method: 'PATCH', headers: { authorization: authHeader(), 'content-type': 'application/json' }, body: JSON.stringify({ ttl: 100_000_000 }), signal: AbortSignal.timeout(10_000) });
    assert.equal(patch.status, 400);
    const after = await runWarden(['show-config', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(after.stdout, before.stdout, 'the configuration is unchanged');
  });

  it('row 3: a ttl change reaches the live leases without an unplanned failover, both ways', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const lead = leaderOf(l);
    const before = await historyLength();
    const longer = await runWarden(['edit-config', '--dir', dir, '--set', 'ttl=30', '--set', 'loop_wait=10', '--set', 'retry_timeout=5', '--force'], { timeoutMs: 15_000 });
    assert.equal(longer.code, 0, longer.stderr);
    const ttlOf = async (apiUrl: string): Promise<number | undefined> => ((await patroni(apiUrl))?.warden as { leaseTtlMs?: number } | undefined)?.leaseTtlMs;
    for (const m of l.members) await eventually(async () => ((await ttlOf(m.apiUrl)) === 30_000 ? true : undefined), { timeoutMs: 30_000, what: `${m.name} on a 30 s lease` });
    // Before the fix a 2 s lease renewed every 10 s lapsed within seconds: watch well past that.
    await holdsFor(async () => assert.equal(leaderOf(await list()).name, lead.name, 'no unplanned failover after ttl 2 → 30'), { durationMs: 12_000, intervalMs: 1000 });
    const shorter = await runWarden(['edit-config', '--dir', dir, '--set', 'ttl=2', '--set', 'loop_wait=0.5', '--set', 'retry_timeout=0.75', '--force'], { timeoutMs: 15_000 });
    assert.equal(shorter.code, 0, shorter.stderr);
    for (const m of l.members) await eventually(async () => ((await ttlOf(m.apiUrl)) === 2_000 ? true : undefined), { timeoutMs: 40_000, what: `${m.name} back on a 2 s lease` });
    // The renewal timed for the 30 s lease must not let the new 2 s lease lapse: watch past it.
    await holdsFor(async () => assert.equal(leaderOf(await list()).name, lead.name, 'no unplanned failover after ttl 30 → 2'), { durationMs: 10_000, intervalMs: 500 });
    assert.equal(await historyLength(), before, 'no failover in either direction');
  });

  it('a bad member record and a bad config key written behind the API leave the leader healthy and list working', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const lead = leaderOf(l);
    const prefix = `/warden/${l.cluster}/`;
    const original = await etcd!.get(`${prefix}config`);
    assert.ok(original !== undefined);
    await etcd!.put(`${prefix}members/ghost`, JSON.stringify({ name: 'ghost', apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: 1, role: 'replica', state: 'streaming', timeline: 1 }));
    await etcd!.put(`${prefix}config`, '{"ttl":"abc"}');
    try {
      await eventually(async () => {
        const p = await patroni(lead.apiUrl);
        const w = p?.warden as { configProblem?: string; reason?: { code: string } } | undefined;
        return w?.configProblem !== undefined && /ttl/.test(w.configProblem) && w.reason?.code === 'leader-healthy' ? true : undefined;
      }, { timeoutMs: 15_000, what: 'the leader refusing the config key and still healthy' });
      const shown = await list();
      assert.match(shown.members.find((m) => m.name === 'ghost')?.state ?? '', /^invalid record: tags: is missing$/);
      assert.ok(shown.invalidRecords.some((r) => r.key === 'config' && /ttl/.test(r.why)));
      const r = await runWarden(['list', '--dir', dir], { timeoutMs: 15_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /ghost/);
      // The router keeps serving writes through its read-write port.
      const state = await readState(dir);
      const rw = state.router!.rw;
      for (let i = 0; i < 5; i++) await sql(dir, rw.host, rw.port, 'SELECT 1');
      assert.equal(leaderOf(await list()).name, lead.name);
    } finally {
      await etcd!.put(`${prefix}config`, original.value);
      await etcd!.delete(`${prefix}members/ghost`);
    }
  });

  it('row 9: etcd refuses a client without the runtime credentials (no key rewritten behind the REST API)', async () => {
    const state = await readState(dir);
    assert.ok(state.etcdAuth !== undefined, 'state.json names the etcd user and its password file');
    const anonymous = new EtcdClient({ endpoints: state.etcd, defaultTimeoutMs: 2000 });
    try {
      await assert.rejects(anonymous.put(`/warden/${state.cluster}/config`, '{"pause":true}'), /user name is empty|permission denied|invalid auth token/);
      await assert.rejects(anonymous.range(`/warden/${state.cluster}/`), /user name is empty|permission denied|invalid auth token/);
    } finally {
      anonymous.close();
    }
    // The runtime's own user reaches /warden/ and nothing else.
    await assert.rejects(etcd!.put('/elsewhere', 'x'), /permission denied/);
    const cli = await runWarden(['list', '--dir', dir], { timeoutMs: 15_000 });
    assert.equal(cli.code, 0, cli.stderr);
  });

  it('row 6: POST /switchover with only the leader promotes exactly one member, recorded as a switchover', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const lead = leaderOf(l);
    const tl = lead.timeline ?? 0;
    const before = await historyLength();
    const res = await fetch(new URL('/switchover', lead.apiUrl), { method: 'POST', headers: { authorization: authHeader(), 'content-type': 'application/json' }, body: JSON.stringify({ leader: lead.name }), signal: AbortSignal.timeout(60_000) });
    assert.equal(res.status, 200, await res.text());
    const healed = await eventually(async () => {
      const x = await healthy();
      return x !== undefined && leaderOf(x).name !== lead.name ? x : undefined;
    }, { timeoutMs: 90_000, what: 'a new leader and the old one streaming' });
    // Any second promotion (the old defect) would come within seconds: watch for it.
    await holdsFor(async () => assert.equal(await historyLength(), before + 1, 'exactly one promotion'), { durationMs: 3000, intervalMs: 500 });
    const h = JSON.parse((await runWarden(['history', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 })).stdout) as { reason: string; timeline: number }[];
    assert.match(h[h.length - 1]?.reason ?? '', /switchover/);
    assert.equal(leaderOf(healed).timeline, tl + 1);
  });

  it('row 7: a replica whose member directory was deleted is recreated from the runtime record and streams again', async () => {
    const l = await eventually(healthy, { timeoutMs: 90_000, what: 'a healthy cluster' });
    const replica = l.members.find((m) => m.role !== 'leader')!;
    const state = await readState(dir);
    const supervisor = state.supervisorPid!;
    const memberDir = join(dir, 'members', replica.name);
    const oldPid = state.members.find((m) => m.name === replica.name)!.agentPid!;
    signalPid(oldPid, 'SIGKILL');
    await waitForExit(oldPid, 10_000);
    await rm(memberDir, { recursive: true, force: true });
    await eventually(async () => {
      const pid = (await readState(dir)).members.find((m) => m.name === replica.name)?.agentPid;
      return typeof pid === 'number' && pid !== oldPid && existsSync(join(memberDir, 'agent.yaml')) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: `a new agent for ${replica.name} with its agent.yaml recreated` });
    await eventually(async () => {
      const x = await healthy();
      return x?.members.some((m) => m.name === replica.name && m.state === 'streaming') === true && existsSync(join(memberDir, 'data', 'PG_VERSION')) ? x : undefined;
    }, { timeoutMs: 180_000, intervalMs: 500, what: `${replica.name} re-cloned and streaming` });
    assert.ok(await isProcessAlive(supervisor), 'the supervisor (parent of etcd and every agent) survived');
  });

  it('row 8: warden restart of a replica says what it is doing and finishes', async () => {
    const l = await eventually(healthy, { timeoutMs: 90_000, what: 'a healthy cluster' });
    const replica = l.members.find((m) => m.role !== 'leader')!;
    const r = await runWarden(['restart', replica.name, '--dir', dir], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`${replica.name}: restarting PostgreSQL…`));
    await eventually(healthy, { timeoutMs: 90_000, what: 'the replica streaming again' });
  });

  it('row 10: after kill -9 of the supervisor, `warden up` stops what it left running and brings the same cluster back', async () => {
    const l = await eventually(healthy, { timeoutMs: 90_000, what: 'a healthy cluster' });
    const sysid = l.systemIdentifier;
    const state = await readState(dir);
    signalPid(state.supervisorPid!, 'SIGKILL');
    await waitForExit(state.supervisorPid!, 10_000);
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /the previous supervisor is gone; stopping what it left running: .*agent .*etcd/);
    const again = await eventually(healthy, { timeoutMs: 90_000, what: 'the same cluster healthy again' });
    assert.equal(again.systemIdentifier, sysid);
  });
});
