import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { isWardenError } from '../../src/core/errors.js';
import { freePorts } from '../../src/core/free-port.js';
import { dcsContract } from '../../src/dcs/dcs-contract.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import { spawnEtcdMember, waitForEtcdHealth } from '../../src/dcs/etcd-server.js';
import { startTestEtcd } from '../support/etcd.js';
import type { TestEtcd } from '../support/etcd.js';

describe('EtcdClient against a real single-member etcd', () => {
  let t: TestEtcd | undefined;
  const clients: EtcdClient[] = [];
  const client = (defaultTimeoutMs = 3_000): EtcdClient => {
    const c = new EtcdClient({ endpoints: t!.etcd.endpoints, defaultTimeoutMs });
    clients.push(c);
    return c;
  };

  before(async () => {
    t = await startTestEtcd();
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.cleanup();
  });

  dcsContract('EtcdClient', async () => {
    const dcs = client();
    const member = t!.etcd.members[0]!;
    return {
      dcs,
      compact: async (revision) => {
        const res = await fetch(`${member.clientUrl}/v3/kv/compaction`, {
          method: 'POST',
          body: JSON.stringify({ revision: String(revision), physical: true }),
          signal: AbortSignal.timeout(5_000),
        });
        assert.equal(res.status, 200, await res.text());
      },
      // A stopped process still accepts TCP connections (the kernel queues them) but never answers.
      stall: async () => {
        process.kill(member.pid, 'SIGSTOP');
        return async () => void process.kill(member.pid, 'SIGCONT');
      },
      cleanup: async () => dcs.close(),
    };
  });

  it('reports a lease lost once it expires without renewal', async () => {
    const dcs = client();
    const lease = await dcs.grantLease(1_000);
    assert.ok(lease.ttlMs >= 1_000, `granted ${lease.ttlMs} ms`);
    const started = Date.now();
    await dcs.put('/expiry/leader', 'me', { leaseId: lease.id });
    // etcd checks expiry about every 500 ms, so the key goes between ttl and ttl + ~1 s.
    await eventually(async () => ((await dcs.get('/expiry/leader')) === undefined ? true : undefined), {
      timeoutMs: lease.ttlMs + 5_000,
      intervalMs: 100,
      what: 'the leased key to vanish',
    });
    assert.ok(Date.now() - started >= lease.ttlMs - 500, `expired after ${Date.now() - started} ms`);
    await assert.rejects(dcs.keepAlive(lease.id), (e: unknown) => isWardenError(e, 'lease-not-found'));
  });

  it('fails with dcs-timeout within the timeout when the only member accepts connections but never answers', async () => {
    const hole = await blackhole();
    const dcs = new EtcdClient({ endpoints: [hole.url], defaultTimeoutMs: 500 });
    try {
      const started = Date.now();
      await assert.rejects(dcs.range('/x'), (e: unknown) => isWardenError(e, 'dcs-timeout') && e.retryable);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 450 && elapsed < 1_500, `gave up after ${elapsed} ms`);
    } finally {
      dcs.close();
      await hole.close();
    }
  });

  it('fails every call, watches included, once the client is closed', async () => {
    const dcs = client();
    const watching = dcs.watch('/closed/', 0, () => undefined, new AbortController().signal);
    await dcs.put('/closed/k', 'v'); // the watch is open by now on the same member
    dcs.close();
    await assert.rejects(watching, (e: unknown) => isWardenError(e, 'dcs-unavailable'));
    await assert.rejects(dcs.get('/closed/k'), (e: unknown) => isWardenError(e, 'dcs-unavailable'));
  });
});

describe('EtcdClient without a reachable endpoint', () => {
  it('fails with dcs-unavailable within the timeout when no endpoint accepts connections', async () => {
    const ports = await freePorts(3);
    const dcs = new EtcdClient({ endpoints: ports.map((p) => `http://127.0.0.1:${p}`), defaultTimeoutMs: 1_000 });
    try {
      const started = Date.now();
      await assert.rejects(dcs.range('/x'), (e: unknown) => isWardenError(e, 'dcs-unavailable') && e.retryable);
      await assert.rejects(dcs.create('/x', 'v'), (e: unknown) => isWardenError(e, 'dcs-unavailable'));
      assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
    } finally {
      dcs.close();
    }
  });
});

describe('EtcdClient against a three-member etcd with a dead member', () => {
  let t: TestEtcd | undefined;
  let dead = '';

  before(async () => {
    t = await startTestEtcd({ members: 3 });
    await t.etcd.stopMember('e1');
    dead = t.etcd.members[0]!.clientUrl;
  });
  after(async () => {
    await t?.cleanup();
  });

  it('fails over past a dead first endpoint and then starts with the one that answered', async () => {
    const [, e2, e3] = t!.etcd.endpoints;
    const dcs = new EtcdClient({ endpoints: [dead, e2!, e3!], defaultTimeoutMs: 5_000 });
    try {
      const rev = await dcs.put('/failover/a', '1');
      assert.equal(dcs.preferredEndpoint, e2);
      assert.equal(await dcs.create('/failover/leader', 'me'), true);
      assert.equal((await dcs.get('/failover/a'))?.modRevision, rev);
      const ac = new AbortController();
      const seen: string[] = [];
      const watching = dcs.watch('/failover/', rev, (events) => seen.push(...events.map((e) => e.kv.key)), ac.signal);
      await eventually(() => (seen.length >= 2 ? true : undefined), { timeoutMs: 5_000, what: 'watch events' });
      ac.abort();
      await watching;
      assert.deepEqual(seen, ['/failover/a', '/failover/leader']);
    } finally {
      dcs.close();
    }
  });

  it('fails over past a member that accepts connections but never answers, within the deadline', async () => {
    const hole = await blackhole();
    const [, e2, e3] = t!.etcd.endpoints;
    const dcs = new EtcdClient({ endpoints: [hole.url, e2!, e3!], defaultTimeoutMs: 3_000 });
    try {
      const started = Date.now();
      await dcs.put('/failover/hung', 'x');
      assert.ok(Date.now() - started < 3_000);
      assert.equal(dcs.preferredEndpoint, e2);
      assert.equal((await dcs.get('/failover/hung'))?.value, 'x');
    } finally {
      dcs.close();
      await hole.close();
    }
  });

  it('restarts a stopped member from its saved description and it catches up', async () => {
    const spec = t!.etcd.cluster.members[0]!;
    const member = spawnEtcdMember(spec, t!.etcd.cluster, { state: 'existing' });
    try {
      await waitForEtcdHealth([spec.clientUrl], 20_000, [member]);
      const dcs = new EtcdClient({ endpoints: [spec.clientUrl], defaultTimeoutMs: 5_000 });
      try {
        assert.equal((await dcs.get('/failover/a'))?.value, '1', 'written while the member was down');
      } finally {
        dcs.close();
      }
    } finally {
      await member.stop();
    }
  });
});

/** A TCP server that accepts connections and never answers: an etcd that hangs. */
async function blackhole(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
