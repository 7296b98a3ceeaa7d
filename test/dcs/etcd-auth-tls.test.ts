import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isWardenError } from '../../src/core/errors.js';
import { dcsContract } from '../../src/dcs/dcs-contract.js';
import { EtcdClient, type EtcdAuth } from '../../src/dcs/etcd-client.js';
import { startEtcdCluster, type EtcdClusterHandle } from '../../src/dcs/etcd-server.js';
import { makePems, type Pems } from '../support/tls.js';

// etcd as production runs it: TLS with client certificates on the client port, and authentication
// with a user whose role may only touch its own prefix.
describe('EtcdClient against a real etcd with TLS, client certificates and authentication', () => {
  let dir = '';
  let pems: Pems;
  let etcd: EtcdClusterHandle | undefined;
  const user: EtcdAuth = { username: 'warden', password: 'correct horse battery staple' };
  const clients: EtcdClient[] = [];
  const client = (over: { auth?: EtcdAuth; cert?: boolean } = {}): EtcdClient => {
    const c = new EtcdClient({
      endpoints: etcd!.endpoints,
      defaultTimeoutMs: 3000,
      tls: { ca: pems.ca, ...(over.cert === false ? {} : { cert: pems.noCnCert, key: pems.noCnKey }) },
      ...(over.auth === undefined ? {} : { auth: over.auth }),
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warden-etcd-tls-'));
    pems = await makePems(dir);
    etcd = await startEtcdCluster({
      dataDir: join(dir, 'data'),
      members: 1,
      tls: { certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key'), caFile: join(dir, 'ca.pem'), clientCertAuth: true },
    });
    assert.match(etcd.endpoints[0] ?? '', /^https:\/\//);
    await client().enableAuthentication({ rootPassword: 'root-secret', user, prefix: '/contract/' });
  });
  after(async () => {
    for (const c of clients) c.close();
    await etcd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('enabling authentication again changes nothing (idempotent)', async () => {
    await client({ auth: { username: 'root', password: 'root-secret' } }).enableAuthentication({ rootPassword: 'root-secret', user, prefix: '/contract/' });
  });

  it('refuses a client without credentials, with a wrong password, or without a client certificate, with a clear error', async () => {
    await assert.rejects(client().put('/contract/x', '1'), (e: unknown) => isWardenError(e) && /user name is empty|permission denied|invalid auth token/.test(e.message));
    await assert.rejects(client({ auth: { username: 'warden', password: 'wrong' } }).put('/contract/x', '1'), (e: unknown) => isWardenError(e, 'dcs-auth-failed') && /authentication as warden failed/.test(e.message));
    await assert.rejects(client({ auth: user, cert: false }).get('/contract/x'), (e: unknown) => isWardenError(e) && e.retryable);
  });

  it("keeps the user inside its role's prefix", async () => {
    const c = client({ auth: user });
    await c.put('/contract/inside', 'ok');
    await assert.rejects(c.put('/elsewhere/x', 'no'), /permission denied/);
  });

  it('authenticates again when etcd no longer knows its token', async () => {
    const c = client({ auth: user });
    await c.put('/contract/t', '1');
    // Disabling and re-enabling auth invalidates every token etcd issued.
    await client({ auth: { username: 'root', password: 'root-secret' } }).disableAuthentication();
    await client().enableAuthentication({ rootPassword: 'root-secret', user, prefix: '/contract/' });
    assert.equal((await c.get('/contract/t'))?.value, '1');
  });

  dcsContract('EtcdClient over TLS with authentication', async () => ({ dcs: client({ auth: user }), cleanup: async () => undefined }));
});
