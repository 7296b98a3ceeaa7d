import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../src/core/clock.js';
import { eventually, holdsFor } from '../../src/core/deadline.js';
import { ControllerCandidate, type ControllerLog } from '../../src/controller/controller.js';
import { CONTROL_KEYS } from '../../src/controller/records.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import { startTestEtcd, type TestEtcd } from '../support/etcd.js';

const quiet: ControllerLog = { info: () => undefined, warn: () => undefined, error: () => undefined };
const TTL_MS = 3_000;

describe('controller election against a real etcd', () => {
  let etcd: TestEtcd;
  const clients: EtcdClient[] = [];
  const candidates: ControllerCandidate[] = [];
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    for (const c of candidates) await c.stop();
    for (const c of clients) c.close();
    await etcd.cleanup();
  });

  it('keeps exactly one controller active, and another is active within one ttl after the active one dies', async () => {
    for (const node of ['node-1', 'node-2', 'node-3']) {
      const dcs = new EtcdClient({ endpoints: etcd.etcd.endpoints, defaultTimeoutMs: 2_000 });
      clients.push(dcs);
      const c = new ControllerCandidate({ dcs, clock: systemClock, node, candidateId: `${node}-${process.pid}`, log: quiet, ttlMs: TTL_MS, passIntervalMs: 250 });
      candidates.push(c);
      c.start();
    }
    const first = await eventually(() => {
      const active = candidates.filter((c) => c.isActive());
      return active.length === 1 ? active[0] : undefined;
    }, { timeoutMs: 10_000, what: 'one active controller' });
    // Never two at once while it holds.
    await holdsFor(() => assert.equal(candidates.filter((c) => c.isActive()).length, 1), { durationMs: 800, intervalMs: 100 });
    const diedAt = Date.now();
    await first.halt();
    const next = await eventually(() => candidates.find((c) => c !== first && c.isActive()), { timeoutMs: TTL_MS + 2_000, intervalMs: 50, what: 'another active controller' });
    const tookMs = Date.now() - diedAt;
    assert.ok(tookMs <= TTL_MS + 500, `took over after ${tookMs} ms (ttl ${TTL_MS} ms)`);
    const key = await clients[0]?.get(CONTROL_KEYS.controller);
    assert.ok(key !== undefined);
    assert.equal(candidates.filter((c) => c.isActive()).length, 1);
    assert.ok(next.isActive());
  });
});
