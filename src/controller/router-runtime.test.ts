import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseRouterConfig } from '../spec/index.js';
import { ensureRouter } from './router-runtime.js';
import { readLayout, type RuntimeLayout } from './runtime-layout.js';

describe('the local runtime router', () => {
  it('gives a runtime dir made before routers existed a router on fresh ports, saved in runtime.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-rr-'));
    try {
      const layout: RuntimeLayout = {
        cluster: 'demo',
        etcd: { token: 't', members: [{ name: 'etcd1', clientUrl: 'http://127.0.0.1:40001', peerUrl: 'http://127.0.0.1:40002', dataDir: join(dir, 'e'), logFile: join(dir, 'e.log') }] },
        members: [{ name: 'demo-1', host: '127.0.0.1', pgPort: 40003, apiPort: 40004, memberDir: dir, dataDir: join(dir, 'd'), configFile: join(dir, 'a.yaml'), logFile: join(dir, 'a.log') }],
        restartDelaySeconds: 5,
        superuser: 'postgres',
        pgpassFile: join(dir, 'pgpass'),
        createdAt: 'now',
      };
      const next = await ensureRouter(dir, layout);
      const r = next.router;
      assert.ok(r !== undefined);
      const ports = [r.rwPort, r.roPort, r.adminPort];
      assert.equal(new Set(ports).size, 3);
      for (const p of ports) assert.ok(![40001, 40002, 40003, 40004].includes(p));
      assert.deepEqual((await readLayout(dir))?.router, r);
      const cfg = parseRouterConfig(await readFile(r.configFile, 'utf8'), r.configFile, {});
      assert.ok(cfg.ok);
      if (cfg.ok) {
        assert.equal(cfg.config.cluster, 'demo');
        assert.deepEqual(cfg.config.etcdEndpoints, ['http://127.0.0.1:40001']);
        assert.deepEqual(cfg.config.listen, { rw: { host: '127.0.0.1', port: r.rwPort }, ro: { host: '127.0.0.1', port: r.roPort }, admin: { host: '127.0.0.1', port: r.adminPort } });
        assert.equal(cfg.config.log.file, r.logFile);
      }
      // A second `up` keeps the same ports.
      assert.deepEqual((await ensureRouter(dir, next)).router, r);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
