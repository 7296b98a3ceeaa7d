import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { systemClock } from '../core/clock.js';
import { eventually } from '../core/deadline.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { silentLogger } from '../agent/logger.js';
import { clusterPrefix } from '../ha/index.js';
import { decodeErrorResponse, encodeEncryptionRequest, encodeStartupMessage } from './pg-protocol.js';
import { Router, type RouterOptions } from './router.js';
import { STARTUP_TIMEOUT_MS } from './tcp-proxy.js';
import { announceSwitchover, clearSwitchover } from './switchover-announcement.js';

// The router against the in-memory DCS and fake backends (TCP servers that answer with their name):
// the proxy's hold, release, drop and refusal rules without PostgreSQL. test/router/ repeats the
// important ones against real etcd and PostgreSQL.

const CLUSTER = 'demo';
const P = clusterPrefix(CLUSTER);
const TAGS = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };

/** A TCP server standing in for PostgreSQL: answers every chunk with `<name>;`. */
class FakeBackend {
  readonly sockets = new Set<net.Socket>();
  accepted = 0;
  private server = net.createServer((s) => {
    this.accepted++;
    this.sockets.add(s);
    s.on('data', () => s.write(`${this.name};`));
    s.on('error', () => undefined);
    s.on('close', () => this.sockets.delete(s));
  });
  port = 0;
  constructor(readonly name: string) {}
  async start(port = 0): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen({ host: '127.0.0.1', port }, resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server = net.createServer((s) => {
      this.accepted++;
      this.sockets.add(s);
      s.on('data', () => s.write(`${this.name};`));
      s.on('error', () => undefined);
      s.on('close', () => this.sockets.delete(s));
    });
  }
}

/** A raw client: sends a startup packet and collects what comes back. */
class Client {
  readonly socket: net.Socket;
  received = Buffer.alloc(0);
  closed = false;
  constructor(port: number, first: Buffer | null = encodeStartupMessage({ user: 'u', database: 'd' })) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('data', (d: Buffer) => (this.received = Buffer.concat([this.received, d])));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
    if (first !== null) this.socket.write(first);
  }
  text(): string {
    return this.received.toString('utf8');
  }
  async reply(timeoutMs = 3000): Promise<string> {
    return eventually(() => (this.received.length > 0 ? this.text() : undefined), { timeoutMs, intervalMs: 10, what: 'a reply' });
  }
  async closedWithin(timeoutMs = 3000): Promise<void> {
    await eventually(() => this.closed || undefined, { timeoutMs, intervalMs: 10, what: 'the client socket to close' });
  }
  end(): void {
    this.socket.destroy();
  }
}

describe('the router against the in-memory DCS and fake backends', { timeout: 60_000 }, () => {
  const backends = { 'demo-1': new FakeBackend('demo-1'), 'demo-2': new FakeBackend('demo-2'), 'demo-3': new FakeBackend('demo-3') };
  let dcs: MemoryDcs;
  let router: Router;
  let rwPort = 0;
  let roPort = 0;
  let adminUrl = '';
  const clients: Client[] = [];
  const client = (port: number, first?: Buffer | null): Client => {
    const c = new Client(port, first);
    clients.push(c);
    return c;
  };

  const putMember = async (name: keyof typeof backends, role: 'primary' | 'replica', state: string, walPosition = '0/3000000'): Promise<void> => {
    const b = backends[name];
    const rec = { name, apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: b.port, role, state, timeline: 1, walPosition, tags: TAGS, version: 't' };
    await dcs.put(`${P}members/${name}`, JSON.stringify(rec));
  };
  const setLeader = (name: string): Promise<number> => dcs.put(`${P}leader`, name);
  const deleteLeader = (): Promise<boolean> => dcs.delete(`${P}leader`);

  async function startRouter(over: Partial<RouterOptions> = {}): Promise<void> {
    router = new Router(
      {
        cluster: CLUSTER,
        holdTimeoutMs: 5000,
        maxHeld: 100,
        connectTimeoutMs: 1000,
        roMaxLagBytes: 1024 * 1024,
        roFallbackToLeader: false,
        listen: { rw: { host: '127.0.0.1', port: 0 }, ro: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
        etcdEndpoints: ['memory'],
        ...over,
      },
      { dcs, clock: systemClock, log: silentLogger },
    );
    const a = await router.start();
    rwPort = a.rw.port;
    roPort = a.ro?.port ?? 0;
    adminUrl = `http://127.0.0.1:${a.admin?.port ?? 0}`;
  }

  before(async () => {
    for (const b of Object.values(backends)) await b.start();
  });
  after(async () => {
    for (const b of Object.values(backends)) await b.stop();
  });
  beforeEach(async () => {
    dcs = new MemoryDcs();
    await dcs.put(`${P}initialize`, '7300');
    await dcs.put(`${P}config`, JSON.stringify({ ttl: 1, loop_wait: 0.25, retry_timeout: 0.25 }));
    await putMember('demo-1', 'primary', 'running');
    await putMember('demo-2', 'replica', 'streaming');
    await putMember('demo-3', 'replica', 'streaming');
    await setLeader('demo-1');
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end();
    await router.stop();
    dcs.close();
  });

  it('sends read-write clients to the leader and read-only clients to the least-loaded replica', async () => {
    await startRouter();
    assert.equal(await client(rwPort).reply(), 'demo-1;');
    const a = await client(roPort).reply();
    const b = await client(roPort).reply();
    assert.deepEqual([a, b].sort(), ['demo-2;', 'demo-3;']);
  });

  it('refuses to start for a cluster that is not in etcd, or when etcd does not answer', async () => {
    const r = new Router({ ...routerOpts(), cluster: 'nope' }, { dcs, clock: systemClock, log: silentLogger });
    await assert.rejects(r.start(), /cluster "nope" not found in etcd at memory/);
    dcs.setAvailable(false);
    const r2 = new Router(routerOpts(), { dcs, clock: systemClock, log: silentLogger });
    await assert.rejects(r2.start(), /cannot read cluster "demo" from etcd at memory/);
    dcs.setAvailable(true);
    await startRouter();
  });

  it('holds new connections while no leader is known and releases them to the new leader', async () => {
    await startRouter();
    await deleteLeader();
    await eventually(() => router.status().rw.backend === null || undefined, { timeoutMs: 2000, what: 'no rw backend' });
    const held = client(rwPort);
    await eventually(() => router.status().held.rw === 1 || undefined, { timeoutMs: 2000, what: 'one held connection' });
    assert.equal(held.received.length, 0);
    // The new leader holds the key but is still promoting: still held.
    await putMember('demo-2', 'replica', 'promoting');
    await setLeader('demo-2');
    await putMember('demo-2', 'primary', 'running');
    assert.equal(await held.reply(), 'demo-2;');
    assert.equal(router.status().held.rw, 0);
  });

  it('drops every session to the old leader the moment the leader key changes', async () => {
    await startRouter();
    const s1 = client(rwPort);
    const s2 = client(rwPort);
    assert.equal(await s1.reply(), 'demo-1;');
    assert.equal(await s2.reply(), 'demo-1;');
    const ro = client(roPort);
    const replica = (await ro.reply()).replace(';', '');
    // The other replica becomes the leader; the one the read-only session uses stays a replica.
    const next = replica === 'demo-2' ? 'demo-3' : 'demo-2';
    await putMember(next, 'primary', 'running');
    await setLeader(next);
    await s1.closedWithin(1000);
    await s2.closedWithin(1000);
    assert.equal(ro.closed, false, 'read-only sessions to a replica that stays are kept');
    assert.equal(await client(rwPort).reply(), `${next};`);
    assert.equal(router.status().dropped['leader-changed'], 2);
  });

  it('refuses after the hold timeout with a PostgreSQL FATAL 57P03, answering an SSLRequest with N first', async () => {
    await startRouter({ holdTimeoutMs: 300 });
    await deleteLeader();
    await eventually(() => router.status().rw.backend === null || undefined, { timeoutMs: 2000, what: 'no rw backend' });
    const c = client(rwPort, encodeEncryptionRequest());
    await eventually(() => (c.text() === 'N' ? true : undefined), { timeoutMs: 3000, intervalMs: 10, what: "an 'N' to the SSLRequest" });
    c.received = Buffer.alloc(0);
    c.socket.write(encodeStartupMessage({ user: 'u' }));
    await c.closedWithin();
    const err = decodeErrorResponse(c.received);
    assert.equal(err?.['S'], 'FATAL');
    assert.equal(err?.['C'], '57P03');
    assert.match(err?.['M'] ?? '', /^warden router: no primary available for cluster demo after 0\.\d s$/);
    assert.match(err?.['D'] ?? '', /no member holds the leader key/);
    assert.equal(router.status().refused['hold-timeout'], 1);
  });

  it('refuses at once with 53300 when maxHeld connections already wait', async () => {
    await startRouter({ maxHeld: 2 });
    await deleteLeader();
    await eventually(() => router.status().rw.backend === null || undefined, { timeoutMs: 2000, what: 'no rw backend' });
    client(rwPort);
    client(rwPort);
    await eventually(() => router.status().held.rw === 2 || undefined, { timeoutMs: 2000, what: 'two held' });
    const third = client(rwPort);
    await third.closedWithin();
    assert.equal(decodeErrorResponse(third.received)?.['C'], '53300');
    assert.equal(router.status().held.rw, 2);
  });

  it('fails closed when etcd stops answering for longer than the ttl, and opens again when it answers', async () => {
    await startRouter({ holdTimeoutMs: 10_000 });
    const session = client(rwPort);
    await session.reply();
    const ro = client(roPort);
    await ro.reply();
    const lostAt = Date.now();
    dcs.setAvailable(false);
    await session.closedWithin(3000);
    const closedAfterMs = Date.now() - lostAt;
    assert.ok(closedAfterMs <= 1500, `closed ${closedAfterMs} ms after etcd went away (ttl 1 s)`);
    assert.equal(router.status().rw.held?.code, 'leader-unconfirmed');
    assert.equal(router.status().dropped['leader-unconfirmed'], 1);
    assert.equal(ro.closed, false, 'reads keep going to replicas');
    const health = await fetch(`${adminUrl}/health`);
    assert.equal(health.status, 503);
    const waiting = client(rwPort);
    await eventually(() => router.status().held.rw === 1 || undefined, { timeoutMs: 2000, what: 'the new connection held' });
    dcs.setAvailable(true);
    assert.equal(await waiting.reply(3000), 'demo-1;');
    assert.equal((await fetch(`${adminUrl}/health`)).status, 200);
  });

  it('holds new rw connections during an announced switchover and sends them to the new leader', async () => {
    await startRouter();
    const old = client(rwPort);
    await old.reply();
    await announceSwitchover(dcs, CLUSTER, 'demo-1', 'demo-2', Date.now() + 60_000);
    await eventually(() => router.status().rw.held?.code === 'switchover-pause' || undefined, { timeoutMs: 2000, what: 'the pause' });
    const held = client(rwPort);
    await eventually(() => router.status().held.rw === 1 || undefined, { timeoutMs: 2000, what: 'one held' });
    assert.equal(old.closed, false, 'the pause itself keeps sessions to the old leader');
    // The old leader stops and releases the key; the candidate takes it and promotes.
    await deleteLeader();
    await putMember('demo-1', 'replica', 'stopped');
    await putMember('demo-2', 'primary', 'running');
    await setLeader('demo-2');
    assert.equal(await held.reply(), 'demo-2;');
    await old.closedWithin(1000);
    await clearSwitchover(dcs, CLUSTER);
    assert.equal(router.status().pause, null);
  });

  it('ignores an expired switchover pause and ends a pause that outlives its untilMs', async () => {
    await announceSwitchover(dcs, CLUSTER, 'demo-1', null, Date.now() - 1);
    await startRouter();
    assert.equal(await client(rwPort).reply(), 'demo-1;');
    await announceSwitchover(dcs, CLUSTER, 'demo-1', null, Date.now() + 400);
    await eventually(() => router.status().rw.held?.code === 'switchover-pause' || undefined, { timeoutMs: 2000, what: 'the pause' });
    const held = client(rwPort);
    assert.equal(await held.reply(3000), 'demo-1;', 'released to the same leader when the pause expires');
  });

  it('closes a held client that sends garbage or too much, and one that leaves, without disturbing the others', async () => {
    await startRouter();
    await deleteLeader();
    await eventually(() => router.status().rw.backend === null || undefined, { timeoutMs: 2000, what: 'no rw backend' });
    const good = client(rwPort);
    const http = client(rwPort, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const huge = client(rwPort, Buffer.concat([Buffer.from([0, 0, 0x27, 0x10, 0, 3, 0, 0]), Buffer.alloc(30_000, 1)]));
    const leaver = client(rwPort, Buffer.from([0, 0]));
    await http.closedWithin();
    await huge.closedWithin();
    // The leaver sent half a packet: it waits for the rest of it, not in the held queue.
    await eventually(() => (router.status().held.rw === 1 && router.status().awaitingStartup === 1) || undefined, { timeoutMs: 2000, what: 'good held, leaver awaiting its packet' });
    leaver.end();
    await eventually(() => (router.status().held.rw === 1 && router.status().awaitingStartup === 0) || undefined, { timeoutMs: 2000, what: 'the leaver gone' });
    await setLeader('demo-1');
    assert.equal(await good.reply(), 'demo-1;');
    assert.ok((router.status().refused['garbage'] ?? 0) >= 2);
  });

  it('opens no backend connection before the client sends its startup packet, and closes idle sockets after the startup timeout', async () => {
    await startRouter();
    const before = backends['demo-1'].accepted;
    const idle = Array.from({ length: 300 }, () => client(rwPort, null));
    await eventually(() => router.status().accepted.rw >= 300 || undefined, { timeoutMs: 5000, what: '300 accepted sockets' });
    assert.equal(backends['demo-1'].accepted, before, 'idle sockets must not reach the primary');
    // A real client is served at once, alongside the idle ones.
    assert.equal(await client(rwPort).reply(), 'demo-1;');
    // A startup packet sent in pieces still counts as one.
    const slow = client(rwPort, null);
    const packet = encodeStartupMessage({ user: 'u', database: 'd' });
    slow.socket.write(packet.subarray(0, 5));
    await new Promise((r) => setImmediate(r));
    slow.socket.write(packet.subarray(5));
    assert.equal(await slow.reply(), 'demo-1;');
    for (const c of idle) await c.closedWithin(STARTUP_TIMEOUT_MS + 3000);
    assert.equal(router.status().closedBeforeStartup.timeout, 300);
  });

  it('retries a leader that refuses TCP connections within the hold budget', async () => {
    const flaky = backends['demo-1'];
    const port = flaky.port;
    await startRouter();
    await flaky.stop();
    const c = client(rwPort);
    await eventually(() => (router.status().backends.find((b) => b.backend.name === 'demo-1')?.connectErrors ?? 0) > 0 || undefined, { timeoutMs: 2000, what: 'a connect error' });
    await flaky.start(port);
    assert.equal(await c.reply(3000), 'demo-1;');
  });

  it('forwards large payloads both ways intact while the client reads slowly (backpressure)', async () => {
    const echo = net.createServer((sock) => {
      sock.pipe(sock);
      sock.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => echo.listen({ host: '127.0.0.1', port: 0 }, resolve));
    try {
      const port = (echo.address() as net.AddressInfo).port;
      const rec = { name: 'demo-1', apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port, role: 'primary', state: 'running', timeline: 1, walPosition: '0/3000000', tags: TAGS, version: 't' };
      await dcs.put(`${P}members/demo-1`, JSON.stringify(rec));
      await startRouter();
      const payload = randomBytes(8 * 1024 * 1024);
      const sock = net.connect({ host: '127.0.0.1', port: rwPort });
      sock.on('error', () => undefined);
      const chunks: Buffer[] = [];
      let got = 0;
      const done = new Promise<void>((resolve) => {
        sock.on('data', (d: Buffer) => {
          chunks.push(d);
          got += d.length;
          // Read in fits and starts so that the router has to wait for the client.
          if (chunks.length % 16 === 0) {
            sock.pause();
            setTimeout(() => sock.resume(), 5);
          }
          if (got >= payload.length) resolve();
        });
      });
      // A startup-looking first packet, then the bulk (the router does not parse sessions).
      // A client sends nothing more until the server answers its startup packet: so does this one.
      sock.write(encodeStartupMessage({ user: 'u' }));
      const startup = encodeStartupMessage({ user: 'u' }).length;
      await eventually(() => (got >= startup ? true : undefined), { timeoutMs: 3000, intervalMs: 5, what: 'the startup echo' });
      sock.write(payload);
      await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${got} bytes came back`)), 30_000))]);
      const back = Buffer.concat(chunks);
      assert.equal(back.length, payload.length + startup);
      assert.ok(back.subarray(startup).equals(payload), 'the bytes came back unchanged and in order');
      sock.destroy();
    } finally {
      await new Promise<void>((resolve) => echo.close(() => resolve()));
    }
  });

  it('serves /status, /metrics and /health', async () => {
    await startRouter();
    await client(rwPort).reply();
    const status = (await (await fetch(`${adminUrl}/status`)).json()) as { leader: string; rw: { backend: { name: string }; open: boolean }; ro: { name: string }[] };
    assert.equal(status.leader, 'demo-1');
    assert.equal(status.rw.backend.name, 'demo-1');
    assert.equal(status.rw.open, true);
    assert.deepEqual(status.ro.map((b) => b.name), ['demo-2', 'demo-3']);
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    assert.match(metrics, /warden_router_connections\{cluster="demo",port="rw",backend="demo-1"\} 1/);
    assert.match(metrics, /warden_router_connections_total\{cluster="demo",port="rw",backend="demo-1"\} 1/);
    assert.match(metrics, /warden_router_held_connections\{cluster="demo",port="rw"\} 0/);
    assert.match(metrics, /warden_router_received_bytes_total\{cluster="demo",port="rw",backend="demo-1"\} \d+/);
    assert.match(metrics, /# TYPE warden_router_hold_duration_seconds histogram/);
    assert.match(metrics, /warden_router_rw_open\{cluster="demo"\} 1/);
    const health = await fetch(`${adminUrl}/health`, { method: 'HEAD' });
    assert.equal(health.status, 200);
    assert.equal((await fetch(`${adminUrl}/nope`)).status, 404);
  });
});

function routerOpts(): RouterOptions {
  return {
    cluster: CLUSTER,
    holdTimeoutMs: 1000,
    maxHeld: 10,
    connectTimeoutMs: 1000,
    roMaxLagBytes: 1024,
    roFallbackToLeader: false,
    listen: { rw: { host: '127.0.0.1', port: 0 } },
    etcdEndpoints: ['memory'],
  };
}
