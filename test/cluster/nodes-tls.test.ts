import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ListOutput } from '../../src/cli/list.js';
import { CLUSTER_SECRETS, secretsKey, type NodeRecord } from '../../src/controller/records.js';
import { decodeJson } from '../../src/core/decode.js';
import { httpCall } from '../../src/core/http-app.js';
import { eventually } from '../../src/core/deadline.js';
import { isProcessAlive, signalPid, waitForExit } from '../../src/core/process-info.js';
import { EtcdClient, type EtcdAuth } from '../../src/dcs/etcd-client.js';
import { startEtcdCluster, type EtcdClusterHandle } from '../../src/dcs/etcd-server.js';
import { runWarden, traversableTempDir, WARDEN_BIN } from '../support/cli.js';
import { probe } from '../support/pg-probe.js';
import { makePems, type Pems } from '../support/tls.js';

// A node daemon against etcd as production runs it across hosts: TLS with client certificates on
// the client port and authentication with a user confined to /warden/. node.yaml names the CA, the
// client certificate and key and the password file; the daemon registers over TLS and hands the
// same files to the agent and the router it runs, so the member bootstraps and the router routes.
// A daemon whose CA does not sign etcd's certificate refuses to start, saying why.

describe('warden node with etcd over TLS and authentication', { timeout: 600_000 }, () => {
  let dir = '';
  let pems: Pems;
  let etcd: EtcdClusterHandle | undefined;
  let root: EtcdClient | undefined;
  const user: EtcdAuth = { username: 'warden', password: 'node-tls-secret' };
  const daemons: ChildProcess[] = [];
  const seen = new Set<number>();

  const nodeYaml = (name: string, ca: string): string =>
    `name: ${name}\ndir: ${join(dir, name)}\netcd:\n  endpoints: [${etcd?.endpoints.join(', ') ?? ''}]\n  username: ${user.username}\n  password_file: ${join(dir, 'etcd.password')}\n  cacert: ${ca}\n  cert: ${join(pems.dir, 'nocn.pem')}\n  key: ${join(pems.dir, 'nocn.key')}\nleaseTtlSeconds: 5\nrestartDelaySeconds: 2\ncontroller:\n  ttlSeconds: 5\nlog:\n  file: ${join(dir, `${name}.log`)}\nrestapi:\n  certfile: ${join(pems.dir, 'server.pem')}\n  keyfile: ${join(pems.dir, 'server.key')}\n  cafile: ${join(pems.dir, 'ca.pem')}\n  verify_client: required\n`;
  const startDaemon = async (name: string, ca: string): Promise<ChildProcess> => {
    await writeFile(join(dir, `${name}.yaml`), nodeYaml(name, ca));
    const out = openSync(join(dir, `${name}.out`), 'a');
    try {
      const child = spawn(process.execPath, [WARDEN_BIN, 'node', '--config', join(dir, `${name}.yaml`)], { stdio: ['ignore', out, out], detached: true });
      daemons.push(child);
      return child;
    } finally {
      closeSync(out);
    }
  };
  const cliEnv = (): NodeJS.ProcessEnv => ({
    WARDEN_ETCD_CACERT: join(pems.dir, 'ca.pem'),
    WARDEN_ETCD_CERT: join(pems.dir, 'nocn.pem'),
    WARDEN_ETCD_KEY: join(pems.dir, 'nocn.key'),
    WARDEN_ETCD_USERNAME: user.username,
    WARDEN_ETCD_PASSWORD_FILE: join(dir, 'etcd.password'),
  });
  const etcdArgs = (): string[] => ['--etcd', etcd?.endpoints.join(',') ?? ''];

  before(async () => {
    dir = await traversableTempDir('warden-nodes-tls-');
    await mkdir(join(dir, 'pki'));
    pems = await makePems(join(dir, 'pki'));
    etcd = await startEtcdCluster({
      dataDir: join(dir, 'etcd'),
      members: 1,
      tls: { certFile: join(pems.dir, 'server.pem'), keyFile: join(pems.dir, 'server.key'), caFile: join(pems.dir, 'ca.pem'), clientCertAuth: true },
    });
    assert.match(etcd.endpoints[0] ?? '', /^https:\/\//);
    const client = new EtcdClient({ endpoints: etcd.endpoints, defaultTimeoutMs: 5_000, tls: { ca: pems.ca, cert: pems.noCnCert, key: pems.noCnKey } });
    await client.enableAuthentication({ rootPassword: 'root-secret', user, prefix: '/warden/' });
    client.close();
    root = new EtcdClient({ endpoints: etcd.endpoints, defaultTimeoutMs: 5_000, tls: { ca: pems.ca, cert: pems.noCnCert, key: pems.noCnKey }, auth: user });
    await writeFile(join(dir, 'etcd.password'), `${user.password}\n`, { mode: 0o600 });
  });

  after(async () => {
    for (const d of daemons) {
      if (d.pid === undefined) continue;
      signalPid(d.pid, 'SIGTERM');
      if (!(await waitForExit(d.pid, 90_000))) signalPid(d.pid, 'SIGKILL');
    }
    for (const pid of seen) if (await isProcessAlive(pid)) signalPid(pid, 'SIGKILL');
    root?.close();
    await etcd?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('refuses to start when its CA does not sign etcd\'s certificate, saying so', async () => {
    const rogue = await startDaemon('node-rogue', join(pems.dir, 'rogue.pem'));
    const code = await new Promise<number | null>((resolve) => rogue.once('exit', (c) => resolve(c)));
    assert.equal(code, 1);
    const out = await readFile(join(dir, 'node-rogue.out'), 'utf8');
    assert.match(out, /warden node: .*(certificate|self.signed|unable to verify)/i, out);
  });

  it('registers over TLS; an applied cluster bootstraps through it and its router routes to the primary', async () => {
    await startDaemon('node-1', join(pems.dir, 'ca.pem'));
    await eventually(async () => {
      const r = await runWarden(['get', 'nodes', ...etcdArgs(), '--format', 'json'], { timeoutMs: 15_000, env: cliEnv() });
      return r.code === 0 && (JSON.parse(r.stdout) as NodeRecord[]).some((n) => n.name === 'node-1') ? true : undefined;
    }, { timeoutMs: 60_000, what: 'node-1 registered over TLS' });
    const file = join(dir, 'app.yaml');
    await writeFile(file, 'apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: app\nspec:\n  instances:\n  - name: instance1\n    replicas: 1\n  proxy:\n    router:\n      replicas: 1\n');
    const applied = await runWarden(['apply', '-f', file, ...etcdArgs(), '--wait', '--timeout', '240'], { timeoutMs: 270_000, env: cliEnv() });
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    const l = await eventually(async () => {
      const r = await runWarden(['list', ...etcdArgs(), '--cluster', 'app', '--format', 'json'], { timeoutMs: 15_000, env: cliEnv() });
      const out = r.code === 0 ? (JSON.parse(r.stdout) as ListOutput) : undefined;
      return out?.members.some((m) => m.role === 'leader' && m.state === 'running') === true ? out : undefined;
    }, { timeoutMs: 120_000, what: 'app-1 leading' });
    assert.deepEqual(l.members.map((m) => m.name), ['app-1']);
    // The agent and router were given the node's TLS files.
    const agentYaml = await readFile(join(dir, 'node-1', 'workloads', 'app', 'members', 'app-1', 'agent.yaml'), 'utf8');
    assert.match(agentYaml, new RegExp(`cacert: ${join(pems.dir, 'ca.pem')}`));
    const routerYaml = await readFile(join(dir, 'node-1', 'workloads', 'app', 'routers', 'app-router-1', 'router.yaml'), 'utf8');
    assert.match(routerYaml, new RegExp(`key: ${join(pems.dir, 'nocn.key')}`));
    const nodes = await eventually(async () => {
      const r = await runWarden(['get', 'nodes', ...etcdArgs(), '--format', 'json'], { timeoutMs: 15_000, env: cliEnv() });
      const ns = JSON.parse(r.stdout) as NodeRecord[];
      for (const n of ns) for (const w of n.workloads) if (w.pid !== null) seen.add(w.pid);
      return ns.find((n) => n.name === 'node-1')?.workloads.some((w) => w.kind === 'router' && w.state === 'running' && w.address !== undefined) === true ? ns : undefined;
    }, { timeoutMs: 60_000, what: 'the router running' });
    const address = nodes.flatMap((n) => n.workloads).find((w) => w.kind === 'router')?.address ?? '';
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const kv = await root?.get(secretsKey('app'));
    const secrets = kv === undefined ? undefined : decodeJson(CLUSTER_SECRETS, kv.value);
    assert.ok(secrets?.ok === true, 'no secrets for app');
    const inRecovery = await eventually(async () => {
      const row = await probe<{ r: boolean }>({ host, port, user: secrets.value.superuser.username, password: secrets.value.superuser.password }, 'SELECT pg_is_in_recovery() AS r');
      return row === undefined ? undefined : String(row.r);
    }, { timeoutMs: 60_000, what: `a connection through the router at ${address}` });
    assert.equal(inRecovery, 'false', 'the router routes to the primary');
  });

  it('serves the agents\' REST API over TLS with client certificates; the controller restarts a member for a parameter change through it', async () => {
    const memberKv = await root?.get('/warden/app/members/app-1');
    const apiUrl = memberKv === undefined ? '' : String((JSON.parse(memberKv.value) as { apiUrl?: string }).apiUrl);
    assert.match(apiUrl, /^https:\/\/127\.0\.0\.1:\d+/, 'the agent publishes an https:// API');
    const withCert = await httpCall(new URL('/patroni', apiUrl), { timeoutMs: 5_000, tls: { ca: pems.ca, cert: pems.clientCert, key: pems.clientKey } });
    assert.equal(withCert.status, 200, withCert.body);
    await assert.rejects(httpCall(new URL('/patroni', apiUrl), { timeoutMs: 5_000, tls: { ca: pems.ca } }), 'no client certificate: refused (verify_client: required)');
    // A parameter that needs a restart: the only member restarts in place, asked by the controller over TLS.
    const file = join(dir, 'app.yaml');
    await writeFile(file, 'apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: app\nspec:\n  instances:\n  - name: instance1\n    replicas: 1\n  proxy:\n    router:\n      replicas: 1\n  patroni:\n    dynamicConfiguration:\n      postgresql:\n        parameters:\n          max_connections: 120\n');
    const applied = await runWarden(['apply', '-f', file, ...etcdArgs()], { timeoutMs: 60_000, env: cliEnv() });
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    const kv = await root?.get(secretsKey('app'));
    const secrets = kv === undefined ? undefined : decodeJson(CLUSTER_SECRETS, kv.value);
    assert.ok(secrets?.ok === true);
    const m = await eventually(async () => {
      const r = await runWarden(['list', ...etcdArgs(), '--cluster', 'app', '--format', 'json'], { timeoutMs: 15_000, env: cliEnv() });
      const out = r.code === 0 ? (JSON.parse(r.stdout) as ListOutput) : undefined;
      const leader = out?.members.find((x) => x.role === 'leader' && x.state === 'running' && !x.pendingRestart);
      if (leader === undefined) return undefined;
      const row = await probe<{ max_connections: string }>({ host: leader.host, port: leader.port, user: secrets.value.superuser.username, password: secrets.value.superuser.password }, 'SHOW max_connections');
      return row?.max_connections === '120' ? leader : undefined;
    }, { timeoutMs: 180_000, intervalMs: 1_000, what: 'app-1 restarted with max_connections 120' });
    assert.equal(m.name, 'app-1');
    const log = await readFile(join(dir, 'node-1.log'), 'utf8');
    assert.match(log, /app-1 restarts for a parameter change \(the only member: it restarts in place\)/);
    assert.doesNotMatch(log, /restart app-1: the agent at https:\/\/\S+ did not answer/, 'the controller reached the agent over TLS');
  });
});
