import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { formatSpecError, loadRouterConfig, parseRouterConfig, ROUTER_DEFAULTS, stringifyRouterConfig } from './index.js';
import type { RouterConfig, SpecError } from './index.js';

type Env = Record<string, string | undefined>;

function accept(text: string, env: Env = {}): RouterConfig {
  const r = parseRouterConfig(text, 'router.yaml', env);
  if (!r.ok) assert.fail(`expected the config to parse, got:\n${r.errors.map(formatSpecError).join('\n')}`);
  return r.config;
}

function reject(text: string, env: Env = {}): string[] {
  const r = parseRouterConfig(text, 'router.yaml', env);
  if (r.ok) assert.fail(`expected errors, the config parsed: ${JSON.stringify(r.config)}`);
  return r.errors.map((e: SpecError) => formatSpecError(e));
}

const MINIMAL = `cluster: demo
etcd:
  endpoints: [http://127.0.0.1:2379]
listen:
  rw: 127.0.0.1:5000
`;

const FULL = `cluster: demo
etcd:
  endpoints:
    - http://127.0.0.1:2379/
    - http://127.0.0.1:2380
listen:
  rw: 127.0.0.1:5000
  ro: 127.0.0.1:5001
  admin: 0.0.0.0:8009
holdTimeoutMs: 5000
maxHeld: 20
roMaxLagBytes: 0
roFallbackToLeader: true
connectTimeoutMs: 500
log: { level: debug, file: /var/log/warden/router.log }
`;

describe('router config', () => {
  it('fills defaults around the required settings', () => {
    const c = accept(MINIMAL);
    assert.equal(c.cluster, 'demo');
    assert.deepEqual(c.etcdEndpoints, ['http://127.0.0.1:2379']);
    assert.deepEqual(c.listen, { rw: { host: '127.0.0.1', port: 5000 } });
    assert.equal(c.holdTimeoutMs, ROUTER_DEFAULTS.holdTimeoutMs);
    assert.equal(c.maxHeld, 1000);
    assert.equal(c.roMaxLagBytes, 1024 * 1024);
    assert.equal(c.roFallbackToLeader, false);
    assert.deepEqual(c.log, { level: 'info' });
  });

  it('reads every setting', () => {
    const c = accept(FULL);
    assert.deepEqual(c.etcdEndpoints, ['http://127.0.0.1:2379', 'http://127.0.0.1:2380']);
    assert.deepEqual(c.listen.ro, { host: '127.0.0.1', port: 5001 });
    assert.deepEqual(c.listen.admin, { host: '0.0.0.0', port: 8009 });
    assert.equal(c.holdTimeoutMs, 5000);
    assert.equal(c.maxHeld, 20);
    assert.equal(c.roMaxLagBytes, 0);
    assert.equal(c.roFallbackToLeader, true);
    assert.equal(c.connectTimeoutMs, 500);
    assert.deepEqual(c.log, { level: 'debug', file: '/var/log/warden/router.log' });
  });

  it('lets WARDEN_ROUTER_* variables win over the file', () => {
    const c = accept(MINIMAL, {
      WARDEN_ROUTER_CLUSTER: 'other',
      WARDEN_ROUTER_ETCD_ENDPOINTS: 'http://10.0.0.1:2379, http://10.0.0.2:2379',
      WARDEN_ROUTER_LISTEN_RW: '127.0.0.1:6000',
      WARDEN_ROUTER_LISTEN_RO: '127.0.0.1:6001',
      WARDEN_ROUTER_HOLD_TIMEOUT_MS: '100',
      WARDEN_ROUTER_MAX_HELD: '7',
      WARDEN_ROUTER_RO_FALLBACK_TO_LEADER: 'yes',
      WARDEN_ROUTER_LOG_LEVEL: '',
    });
    assert.equal(c.cluster, 'other');
    assert.deepEqual(c.etcdEndpoints, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
    assert.equal(c.listen.rw.port, 6000);
    assert.equal(c.listen.ro?.port, 6001);
    assert.equal(c.holdTimeoutMs, 100);
    assert.equal(c.maxHeld, 7);
    assert.equal(c.roFallbackToLeader, true);
    assert.equal(c.log.level, 'info');
  });

  it('runs from the environment alone', () => {
    const c = accept('', { WARDEN_ROUTER_CLUSTER: 'demo', WARDEN_ROUTER_ETCD_ENDPOINTS: 'http://127.0.0.1:2379', WARDEN_ROUTER_LISTEN_RW: '127.0.0.1:5000' });
    assert.equal(c.cluster, 'demo');
  });

  const bad: { name: string; text: string; env?: Env; expect: RegExp }[] = [
    { name: 'names a misspelt key with a suggestion', text: `${MINIMAL}holdTimeoutMS: 5\n`, expect: /^router\.yaml:6:1: holdTimeoutMS: unknown field "holdTimeoutMS"; did you mean "holdTimeoutMs"\?/ },
    { name: 'points at a bad listen address', text: MINIMAL.replace('127.0.0.1:5000', '127.0.0.1:99999'), expect: /^router\.yaml:5:3: listen\.rw: must be host:port/ },
    { name: 'requires the rw address', text: 'cluster: demo\netcd: { endpoints: [http://127.0.0.1:2379] }\nlisten: {}\n', expect: /listen\.rw: required: the read-write listen address/ },
    { name: 'requires the cluster', text: 'etcd: { endpoints: [http://127.0.0.1:2379] }\nlisten: { rw: 127.0.0.1:1 }\n', expect: /^router\.yaml:1:1: cluster: required/ },
    { name: 'rejects a cluster name that is not a DNS label', text: MINIMAL.replace('cluster: demo', 'cluster: Demo_1'), expect: /^router\.yaml:1:1: cluster: must contain only lowercase/ },
    { name: 'rejects an etcd URL that is not http', text: MINIMAL.replace('http://127.0.0.1:2379', 'etcd://x'), expect: /^router\.yaml:3:15: etcd\.endpoints\[0\]: must be an http/ },
    { name: 'rejects a negative hold timeout', text: `${MINIMAL}holdTimeoutMs: -1\n`, expect: /^router\.yaml:6:1: holdTimeoutMs: must be an integer from 0 to/ },
    { name: 'rejects a non-boolean fallback', text: `${MINIMAL}roFallbackToLeader: maybe\n`, expect: /roFallbackToLeader: must be true or false/ },
    { name: 'rejects two ports on one address', text: `${MINIMAL}  ro: 127.0.0.1:5000\n`, expect: /listen\.ro: uses the same address as listen\.rw/ },
    { name: 'names the variable that is wrong', text: MINIMAL, env: { WARDEN_ROUTER_MAX_HELD: 'lots' }, expect: /^environment: WARDEN_ROUTER_MAX_HELD: must be an integer/ },
    { name: 'reports YAML syntax errors with their position', text: 'cluster: [demo\n', expect: /^router\.yaml:\d+:\d+: YAML syntax error/ },
  ];
  for (const c of bad) {
    it(c.name, () => {
      const errors = reject(c.text, c.env);
      assert.ok(errors.some((e) => c.expect.test(e)), errors.join('\n'));
    });
  }

  it('reads back what it writes', () => {
    const c = accept(FULL);
    assert.deepEqual(accept(stringifyRouterConfig(c)), c);
  });

  it('names a missing file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-rc-'));
    try {
      const r = await loadRouterConfig(join(dir, 'nope.yaml'), {});
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(formatSpecError(r.errors[0]!), /nope\.yaml: router config file not found/);
      await writeFile(join(dir, 'r.yaml'), MINIMAL);
      const ok = await loadRouterConfig(join(dir, 'r.yaml'), {});
      assert.equal(ok.ok, true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
