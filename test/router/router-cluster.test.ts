import { etcdClientFromState } from '../../src/controller/state-file.js';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { silentLogger } from '../../src/agent/logger.js';
import { systemClock } from '../../src/core/clock.js';
import { eventually, within } from '../../src/core/deadline.js';
import { freePorts } from '../../src/core/free-port.js';
import { isProcessAlive, signalPid } from '../../src/core/process-info.js';
import type { StateFile } from '../../src/controller/state-file.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import { announceSwitchover, clearSwitchover, encodeEncryptionRequest, encodeStartupMessage, Router, type RouterStatus } from '../../src/router/index.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { patroni, postmasterPid, processTree, readState } from '../support/cluster.js';
import { startTestEtcd, type TestEtcd } from '../support/etcd.js';

/** A pg client through host:port; `dropped` settles when the server side goes away. */
interface Session {
  readonly client: pg.Client;
  readonly ended: Promise<void>;
  isEnded(): boolean;
}

async function connect(port: number, password: string, timeoutMs: number): Promise<Session> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: timeoutMs, query_timeout: 5000 });
  let ended = false;
  const endedP = new Promise<void>((resolve) => client.once('end', () => ((ended = true), resolve())));
  client.on('error', () => undefined);
  await client.connect();
  return { client, ended: endedP, isEnded: () => ended };
}

async function whoAmI(s: Session): Promise<{ port: number; inRecovery: boolean }> {
  const r = await s.client.query<{ port: number; r: boolean }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS r');
  return { port: r.rows[0]!.port, inRecovery: r.rows[0]!.r };
}

const end = async (s: Session | undefined): Promise<void> => {
  await s?.client.end().catch(() => undefined);
};

// One `warden up` cluster for the file: the router it starts by default is what clients use.
describe('the router of `warden up` with real etcd and PostgreSQL', { timeout: 600_000 }, () => {
  let dir = '';
  let state: StateFile;
  let password = '';
  let upOutput = '';
  const frozen: number[] = [];
  const children: ChildProcess[] = [];

  const routerStatus = async (): Promise<RouterStatus> => {
    const admin = state.router?.admin;
    assert.ok(admin, 'the router admin address is in state.json');
    const res = await fetch(`http://${admin.host}:${admin.port}/status`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as RouterStatus;
  };
  const leaderMember = async (): Promise<StateFile['members'][number]> => {
    const s = await eventually(async () => {
      const st = await routerStatus();
      return st.rw.open && st.rw.backend !== null ? st.rw.backend : undefined;
    }, { timeoutMs: 60_000, what: 'the router to route read-write traffic' });
    const m = state.members.find((x) => x.name === s.name);
    assert.ok(m);
    return m;
  };
  const healthy = async (): Promise<true | undefined> => {
    const sts = await Promise.all(state.members.map((m) => patroni(m.apiUrl)));
    const leaders = sts.filter((p) => p?.warden?.isLeader === true && p.role === 'primary' && p.state === 'running');
    const streaming = sts.filter((p) => p?.role === 'replica' && p.warden?.state === 'streaming');
    return leaders.length === 1 && streaming.length === state.members.length - 1 ? true : undefined;
  };

  before(async () => {
    dir = await traversableTempDir('warden-router-it-');
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 300_000 });
    upOutput = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.code, 0, upOutput);
    state = await readState(dir);
    password = (await readFile(join(dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  });

  after(async () => {
    for (const pid of frozen) signalPid(pid, 'SIGCONT');
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) signalPid(c.pid, 'SIGKILL');
    if (dir !== '') {
      await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('starts a router by default, records it in state.json and prints its connection strings', async () => {
    assert.ok(state.router !== null);
    assert.equal(state.router.rw.host, '127.0.0.1');
    assert.ok(state.router.rw.port > 0 && state.router.ro.port > 0 && state.router.rw.port !== state.router.ro.port);
    assert.ok(typeof state.router.pid === 'number' && (await isProcessAlive(state.router.pid)));
    assert.match(upOutput, new RegExp(`psql "host=127\\.0\\.0\\.1 port=${state.router.rw.port} user=postgres dbname=postgres"\\s+# read-write`));
    assert.match(upOutput, new RegExp(`port=${state.router.ro.port} .*# read-only`));
  });

  it('sends read-write clients to the primary and read-only clients to replicas', async () => {
    const leader = await leaderMember();
    const rw = await connect(state.router!.rw.port, password, 5000);
    assert.deepEqual(await whoAmI(rw), { port: leader.port, inRecovery: false });
    await rw.client.query('CREATE TABLE IF NOT EXISTS router_it (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
    await rw.client.query('INSERT INTO router_it DEFAULT VALUES');
    await end(rw);
    // Both replicas must be in the read-only pool before the spread can be checked: a replica
    // joins it only once it streams within the lag limit, which can come after the rw route opens.
    await eventually(async () => ((await routerStatus()).ro.length === state.members.length - 1 ? true : undefined), {
      timeoutMs: 60_000,
      what: 'both replicas in the read-only pool',
    });
    const seen = new Set<number>();
    const ros = await Promise.all([0, 1].map(() => connect(state.router!.ro.port, password, 5000)));
    for (const ro of ros) {
      const me = await whoAmI(ro);
      assert.equal(me.inRecovery, true);
      seen.add(me.port);
    }
    assert.equal(seen.size, 2, 'least connections spreads two sessions over both replicas');
    for (const ro of ros) await end(ro);
    const st = await routerStatus();
    assert.ok(st.backends.some((b) => b.port === 'rw' && b.backend.name === leader.name && b.connectionsTotal >= 1 && b.bytesToClients > 0));
  });

  it('costs a garbage or half-finished client nothing but its own socket', async () => {
    const rwPort = state.router!.rw.port;
    const garbage = [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.alloc(64 * 1024, 0xff), encodeStartupMessage({ user: 'postgres' }).subarray(0, 10), encodeEncryptionRequest(), Buffer.from([0, 0, 0])];
    for (const port of [rwPort, state.router!.ro.port]) {
      await Promise.all(
        garbage.map(
          (bytes) =>
            new Promise<void>((resolve) => {
              const s = net.connect({ host: '127.0.0.1', port }, () => {
                s.write(bytes);
                setTimeout(() => s.destroy(), 50);
              });
              s.on('error', () => undefined);
              s.on('close', () => resolve());
            }),
        ),
      );
    }
    assert.ok(await isProcessAlive(state.router!.pid!), 'the router still runs');
    const s = await connect(rwPort, password, 5000);
    assert.equal((await whoAmI(s)).inRecovery, false);
    await end(s);
  });

  it('holds new read-write connections during an announced switchover and releases them when it is over', async () => {
    const leader = await leaderMember();
    const etcd = etcdClientFromState(state, 2000);
    try {
      await announceSwitchover(etcd, state.cluster, leader.name, null, Date.now() + 60_000);
      await eventually(async () => ((await routerStatus()).rw.held?.code === 'switchover-pause' ? true : undefined), { timeoutMs: 5000, what: 'the router to see the pause' });
      const pending = connect(state.router!.rw.port, password, 30_000);
      await eventually(async () => ((await routerStatus()).held.rw >= 1 ? true : undefined), { timeoutMs: 5000, what: 'the connection to be held' });
      await clearSwitchover(etcd, state.cluster);
      const s = await pending;
      assert.deepEqual(await whoAmI(s), { port: leader.port, inRecovery: false });
      await end(s);
    } finally {
      await clearSwitchover(etcd, state.cluster).catch(() => undefined);
      etcd.close();
    }
  });

  it('drops sessions to a frozen primary when its lease goes, holds new connections, and sends them to the new primary', async () => {
    await eventually(healthy, { timeoutMs: 90_000, what: 'a healthy cluster' });
    const old = await leaderMember();
    const session = await connect(state.router!.rw.port, password, 5000);
    assert.equal((await whoAmI(session)).port, old.port);
    const cur = await readState(dir);
    const agentPid = cur.members.find((m) => m.name === old.name)!.agentPid!;
    const pids = await processTree(agentPid);
    const pm = await postmasterPid(old.dataDir);
    if (pm !== undefined && !pids.includes(pm)) pids.push(...(await processTree(pm)));
    frozen.push(...pids);
    for (const pid of pids) signalPid(pid, 'SIGSTOP');

    // Within one ttl etcd deletes the leader key; the router drops the session to the old leader at once.
    await eventually(async () => ((await routerStatus()).rw.backend?.name !== old.name ? true : undefined), { timeoutMs: 30_000, intervalMs: 50, what: 'the router to let go of the old leader' });
    await within(session.ended, 2000, 'dropping the session to the old leader');
    const afterLoss = await routerStatus();
    assert.ok((afterLoss.dropped['leader-lost'] ?? 0) + (afterLoss.dropped['leader-changed'] ?? 0) >= 1, JSON.stringify(afterLoss.dropped));

    // A connection made now waits (held, not refused) and lands on the new primary.
    const started = Date.now();
    const pending = connect(state.router!.rw.port, password, 60_000);
    const s = await pending;
    const me = await whoAmI(s);
    assert.equal(me.inRecovery, false);
    assert.notEqual(me.port, old.port);
    await s.client.query('INSERT INTO router_it DEFAULT VALUES');
    await end(s);
    assert.ok(Date.now() - started < 60_000);
    const st = await routerStatus();
    assert.ok(st.leaderChanges >= 1);

    for (const pid of pids) signalPid(pid, 'SIGCONT');
    frozen.length = 0;
    await eventually(healthy, { timeoutMs: 120_000, what: 'the old primary back as a replica' });
  });

  it('is restarted by the supervisor when it dies', async () => {
    const pid = state.router!.pid!;
    signalPid(pid, 'SIGKILL');
    const next = await eventually(async () => {
      const s = await readState(dir);
      return typeof s.router?.pid === 'number' && s.router.pid !== pid && (await isProcessAlive(s.router.pid)) ? s : undefined;
    }, { timeoutMs: 30_000, what: 'a new router process' });
    state = next;
    const s = await eventually(async () => connect(state.router!.rw.port, password, 5000), { timeoutMs: 30_000, what: 'a connection through the restarted router' });
    assert.equal((await whoAmI(s)).inRecovery, false);
    await end(s);
  });

  it('prints an HAProxy config that Debian\'s haproxy runs and routes to the primary and the replicas', async () => {
    const [rwPort, roPort] = await freePorts(2);
    const r = await runWarden(['haproxy-config', '--dir', dir, '--rw-port', String(rwPort), '--ro-port', String(roPort)], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /option httpchk OPTIONS \/primary/);
    assert.match(r.stdout, /http-check expect status 200/);
    assert.match(r.stdout, /default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions/);
    const cfg = join(dir, 'haproxy.cfg');
    await writeFile(cfg, r.stdout);
    const check = await runCommand('haproxy', ['-c', '-f', cfg]);
    assert.equal(check.code, 0, check.output);
    const haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(haproxy);
    try {
      const leader = await leaderMember();
      // HAProxy marks servers up after their first checks (rise 1, every second).
      const s = await eventually(async () => {
        const c = await connect(rwPort!, password, 3000);
        if ((await whoAmI(c)).port === leader.port) return c;
        await end(c);
        return undefined;
      }, { timeoutMs: 30_000, intervalMs: 250, what: 'HAProxy to reach the primary' });
      assert.deepEqual(await whoAmI(s), { port: leader.port, inRecovery: false });
      await end(s);
      const ro = await eventually(async () => {
        const c = await connect(roPort!, password, 3000);
        if ((await whoAmI(c)).inRecovery) return c;
        await end(c);
        return undefined;
      }, { timeoutMs: 30_000, intervalMs: 250, what: 'HAProxy to reach a replica' });
      assert.notEqual((await whoAmI(ro)).port, leader.port);
      await end(ro);
    } finally {
      if (haproxy.pid !== undefined) signalPid(haproxy.pid, 'SIGTERM');
      await eventually(() => (haproxy.exitCode !== null || haproxy.signalCode !== null ? true : undefined), { timeoutMs: 10_000, what: 'haproxy to exit' });
    }
  });

  it('exits with a clear error for an unknown cluster, an unreachable etcd or a bad config', async () => {
    const [p1, p2] = await freePorts(2);
    const cfg = join(dir, 'bad-router.yaml');
    // warden up runs etcd with authentication: without the runtime's credentials etcd says no.
    await writeFile(cfg, `cluster: demo\netcd: { endpoints: [${state.etcd.join(', ')}] }\nlisten: { rw: 127.0.0.1:${p1} }\n`);
    const anonymous = await runWarden(['router', '--config', cfg], { timeoutMs: 30_000 });
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stderr, /cannot read cluster "demo" from etcd .*user name is empty/);
    const auth = state.etcdAuth!;
    await writeFile(cfg, `cluster: nosuch\netcd: { endpoints: [${state.etcd.join(', ')}], username: ${auth.username}, password_file: ${auth.passwordFile} }\nlisten: { rw: 127.0.0.1:${p1} }\n`);
    const unknown = await runWarden(['router', '--config', cfg], { timeoutMs: 30_000 });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /cluster "nosuch" not found in etcd at http:\/\/127\.0\.0\.1:\d+/);
    await writeFile(cfg, `cluster: demo\netcd: { endpoints: [http://127.0.0.1:${p2}] }\nlisten: { rw: 127.0.0.1:${p1} }\n`);
    const unreachable = await runWarden(['router', '--config', cfg], { timeoutMs: 30_000 });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, new RegExp(`cannot read cluster "demo" from etcd at http://127\\.0\\.0\\.1:${p2}`));
    await writeFile(cfg, `cluster: demo\netcd: { endpoints: [${state.etcd[0]}] }\nlisten: { rw: 127.0.0.1:${p1} }\nmaxHeld: many\n`);
    const bad = await runWarden(['router', '--config', cfg], { timeoutMs: 30_000 });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /bad-router\.yaml:4:1: maxHeld: must be an integer/);
  });

  describe('fail-closed, against its own etcd (stopped by PID) and the cluster\'s PostgreSQL', () => {
    let etcd: TestEtcd | undefined;
    let router: Router | undefined;
    let client: EtcdClient | undefined;

    after(async () => {
      await router?.stop();
      client?.close();
      await etcd?.cleanup();
    });

    it('drops read-write sessions once etcd has not confirmed the leader for a ttl, then refuses held connections with 57P03', async () => {
      const leader = await leaderMember();
      etcd = await startTestEtcd();
      client = new EtcdClient({ endpoints: etcd.etcd.endpoints, defaultTimeoutMs: 1000 });
      // A stand-in cluster "fc" whose leader record points at the real primary.
      const P = '/warden/fc/';
      const rec = { name: 'fc-1', apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: leader.port, role: 'primary', state: 'running', timeline: 1, walPosition: '0/3000000', tags: { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false }, version: 't' };
      await client.put(`${P}initialize`, '1');
      await client.put(`${P}config`, JSON.stringify({ ttl: 2, loop_wait: 0.5, retry_timeout: 0.75 }));
      await client.put(`${P}members/fc-1`, JSON.stringify(rec));
      await client.put(`${P}leader`, 'fc-1');
      router = new Router(
        { cluster: 'fc', holdTimeoutMs: 1500, maxHeld: 10, connectTimeoutMs: 1000, roMaxLagBytes: 1024, roFallbackToLeader: false, listen: { rw: { host: '127.0.0.1', port: 0 } }, etcdEndpoints: etcd.etcd.endpoints },
        { dcs: client, clock: systemClock, log: silentLogger },
      );
      const { rw } = await router.start();
      const s = await connect(rw.port, password, 5000);
      assert.equal((await whoAmI(s)).port, leader.port);

      const stoppedAt = Date.now();
      await etcd.etcd.stop();
      await within(s.ended, 5000, 'dropping the session');
      const droppedAfterMs = Date.now() - stoppedAt;
      assert.ok(droppedAfterMs <= 2000 + 700, `dropped ${droppedAfterMs} ms after etcd stopped (ttl 2 s)`);
      assert.equal(router.status().rw.held?.code, 'leader-unconfirmed');
      assert.equal(router.status().dropped['leader-unconfirmed'], 1);

      const refusedAt = Date.now();
      await assert.rejects(connect(rw.port, password, 10_000), (e: Error & { code?: string }) => {
        assert.equal(e.code, '57P03');
        assert.match(e.message, /^warden router: no primary available for cluster fc after 1\.\d s$/);
        return true;
      });
      assert.ok(Date.now() - refusedAt >= 1400, 'held for the hold timeout first');
    });
  });
});

function runCommand(command: string, args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    c.stdout.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
    c.once('error', reject);
    c.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, output });
    });
  });
}
