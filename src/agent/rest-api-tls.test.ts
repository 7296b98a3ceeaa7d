import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { httpCall, type ClientTls, type ServerTls } from '../core/http-app.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../ha/index.js';
import type { AgentSnapshot } from './agent.js';
import { createRestApi } from './rest-api.js';
import { makePems, type Pems } from '../../test/support/tls.js';

const TAGS = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };
function snap(): AgentSnapshot {
  return {
    identity: { name: 'demo-1', cluster: 'demo', apiUrl: 'https://127.0.0.1:8008', pgHost: '127.0.0.1', pgPort: 5432, tags: TAGS, bootstrapConfig: DEFAULT_DYNAMIC_CONFIG },
    view: undefined,
    dcsError: undefined,
    pg: undefined,
    status: undefined,
    isLeader: false,
    reason: { code: 'starting', message: 'starting' },
    state: 'starting',
    role: 'replica',
    lastLoopAtMs: Date.now(),
    lastOkLoopAtMs: Date.now(),
    loopDurationMs: 1,
    leaseDeadlineMs: undefined,
    startedAtMs: Date.now(),
    decisions: new Map(),
  };
}

describe('REST API over TLS (restapi.certfile / keyfile / cafile / verify_client)', () => {
  let dir = '';
  let pems: Pems;
  const servers: Server[] = [];

  const serve = async (verifyClient: ServerTls['verifyClient']): Promise<string> => {
    const app = createRestApi(snap, new Registry(), {
      snapshot: snap,
      requestOperation: async () => ({ ok: true, reason: { code: 'reloading', message: 'reloaded' } }),
      poke: () => undefined,
      dcs: new MemoryDcs(),
      cluster: 'demo',
      requireClientCert: verifyClient !== 'none',
    });
    const server = await app.listen('127.0.0.1', 0, 'REST API', { cert: pems.serverCert, key: pems.serverKey, ca: pems.ca, verifyClient });
    servers.push(server);
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  const call = (base: string, path: string, method: string, tls: ClientTls) => httpCall(`${base}${path}`, { method, timeoutMs: 5000, tls });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warden-tls-'));
    pems = await makePems(dir);
  });
  after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('serves HTTPS that a client trusting the CA reads, and a client that does not refuses', async () => {
    const base = await serve('none');
    const r = await call(base, '/patroni', 'GET', { ca: pems.ca });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as { patroni: { name: string } }).patroni.name, 'demo-1');
    await assert.rejects(call(base, '/patroni', 'GET', {}), /self[- ]signed|unable to verify|certificate/i);
  });

  it('verify_client required: no handshake without a client certificate the CA signed', async () => {
    const base = await serve('required');
    await assert.rejects(call(base, '/patroni', 'GET', { ca: pems.ca }));
    await assert.rejects(call(base, '/patroni', 'GET', { ca: pems.ca, cert: pems.rogueCert, key: pems.rogueKey }));
    assert.equal((await call(base, '/patroni', 'GET', { ca: pems.ca, cert: pems.clientCert, key: pems.clientKey })).status, 200);
    assert.equal((await call(base, '/reload', 'POST', { ca: pems.ca, cert: pems.clientCert, key: pems.clientKey })).status, 202);
  });

  it('verify_client optional: health checks open to all, mutating calls only with a verified certificate (403 otherwise)', async () => {
    const base = await serve('optional');
    assert.equal((await call(base, '/replica', 'GET', { ca: pems.ca })).status, 503, 'a health check answers without a client certificate');
    const bare = await call(base, '/reload', 'POST', { ca: pems.ca });
    assert.equal(bare.status, 403);
    assert.match(bare.body, /client certificate signed by restapi.cafile is required/);
    assert.equal((await call(base, '/reload', 'POST', { ca: pems.ca, cert: pems.rogueCert, key: pems.rogueKey })).status, 403);
    assert.equal((await call(base, '/reload', 'POST', { ca: pems.ca, cert: pems.clientCert, key: pems.clientKey })).status, 202);
  });
});
