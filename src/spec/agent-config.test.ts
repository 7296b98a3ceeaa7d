import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_DYNAMIC_CONFIG } from '../ha/dynamic-config.js';
import {
  defaultRunAsUser,
  formatHostPort,
  formatSpecError,
  loadAgentConfig,
  parseAgentConfig,
  parseHostPort,
  stringifyAgentConfig,
  withRunAsUserDefault,
} from './index.js';
import type { AgentConfig, AgentSettingsInput, SpecError } from './index.js';

const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';
const PASSWORDS: Record<string, string> = {
  '/secrets/superuser': 'su-secret\n',
  '/secrets/replication': 'repl-secret',
  '/tls/server.pem': CERT,
  '/tls/server.key': KEY,
  '/tls/ca.pem': CERT,
};
const readPasswordFile = (path: string): string => {
  const p = PASSWORDS[path];
  if (p === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
  return p;
};

type Env = Record<string, string | undefined>;

function accept(text: string, env: Env = {}, file = 'agent.yaml'): AgentConfig {
  const r = parseAgentConfig(text, file, env, { readPasswordFile });
  if (!r.ok) assert.fail(`expected the config to parse, got:\n${r.errors.map(formatSpecError).join('\n')}`);
  return r.config;
}

function reject(text: string, env: Env = {}, file = 'agent.yaml'): readonly SpecError[] {
  const r = parseAgentConfig(text, file, env, { readPasswordFile });
  if (r.ok) assert.fail(`expected errors, the config parsed: ${JSON.stringify(r.config)}`);
  return r.errors;
}

const FULL = `name: demo-1
cluster: demo
etcd:
  endpoints: [http://127.0.0.1:2379, "https://etcd-2.internal:2379/"]
restapi:
  listen: 0.0.0.0:8008
  connect_address: 10.0.0.11:8008
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /var/lib/warden/demo-1/data
  bin_dir: /usr/lib/postgresql/15/bin
  run_as_user: postgres
  authentication:
    superuser: { username: postgres, password_file: /secrets/superuser }
    replication: { username: replicator, password_file: /secrets/replication }
tags: { nofailover: false, failover_priority: 2, nosync: true, noloadbalance: false }
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 3
    postgresql:
      parameters: { max_connections: 100 }
log: { level: debug, file: /var/log/warden/demo-1.log }
`;

/** A minimal valid file; every test that wants one broken setting starts from it. */
const MINIMAL = `name: demo-1
cluster: demo
etcd: { endpoints: [http://127.0.0.1:2379] }
postgresql:
  data_dir: /data/demo-1/pg
  authentication:
    superuser: { password: su }
    replication: { password: repl }
`;

describe('agent config: REST API TLS', () => {
  it('reads certfile, keyfile, cafile and verify_client, also from WARDEN_RESTAPI_* variables', () => {
    const c = accept(`${MINIMAL}restapi:\n  certfile: /tls/server.pem\n  keyfile: /tls/server.key\n  cafile: /tls/ca.pem\n  verify_client: optional\n`);
    assert.deepEqual(c.restApi.tls, { cert: CERT, key: KEY, ca: CERT, verifyClient: 'optional' });
    const e = accept(MINIMAL, { WARDEN_RESTAPI_CERTFILE: '/tls/server.pem', WARDEN_RESTAPI_KEYFILE: '/tls/server.key' });
    assert.deepEqual(e.restApi.tls, { cert: CERT, key: KEY, verifyClient: 'none' });
    assert.equal(accept(MINIMAL).restApi.tls, undefined);
  });
});

describe('agent config: accepted files', () => {
  it('reads every setting of a full file into typed values', () => {
    assert.deepEqual(accept(FULL), {
      name: 'demo-1',
      cluster: 'demo',
      etcdEndpoints: ['http://127.0.0.1:2379', 'https://etcd-2.internal:2379'],
      restApi: { listen: { host: '0.0.0.0', port: 8008 }, connectAddress: { host: '10.0.0.11', port: 8008 } },
      postgres: {
        listen: { host: '127.0.0.1', port: 5432 },
        connectAddress: { host: '127.0.0.1', port: 5432 },
        dataDir: '/var/lib/warden/demo-1/data',
        binDir: '/usr/lib/postgresql/15/bin',
        callbacks: {},
        socketDir: '/var/lib/warden/demo-1/run',
        runAsUser: 'postgres',
        superuser: { username: 'postgres', password: 'su-secret' },
        replication: { username: 'replicator', password: 'repl-secret' },
      },
      tags: { nofailover: false, failoverPriority: 2, nosync: true, noloadbalance: false },
      bootstrapDynamicConfig: { ...DEFAULT_DYNAMIC_CONFIG, ttl: 10, loop_wait: 2, retry_timeout: 3, postgresql: { use_pg_rewind: true, parameters: { max_connections: 100 } } },
      bootstrapMethod: { kind: 'initdb' },
      log: { level: 'debug', file: '/var/log/warden/demo-1.log' },
    });
  });

  it('reads REST API basic auth, the pre_promote hook and callbacks', () => {
    const text = FULL.replace('  connect_address: 10.0.0.11:8008\n', '  connect_address: 10.0.0.11:8008\n  authentication: { username: admin, password_file: /secrets/superuser }\n')
      .replace('  run_as_user: postgres\n', '  run_as_user: postgres\n  pre_promote: /usr/local/bin/check-fence\n  callbacks: { on_role_change: /usr/local/bin/notify }\n');
    const c = accept(text);
    assert.deepEqual(c.restApi.authentication, { username: 'admin', password: 'su-secret' });
    assert.equal(c.postgres.prePromote, '/usr/local/bin/check-fence');
    assert.deepEqual(c.postgres.callbacks, { onRoleChange: '/usr/local/bin/notify' });
    const errs = reject(FULL.replace('  connect_address: 10.0.0.11:8008\n', '  connect_address: 10.0.0.11:8008\n  authentication: { username: admin }\n'));
    assert.equal(errs[0]?.field, 'restapi.authentication.password');
  });

  it('fills defaults: listen addresses, connect addresses from listen, bin dir, socket dir beside the data dir, users, tags, log', () => {
    const c = accept(MINIMAL);
    assert.deepEqual(c.restApi, { listen: { host: '127.0.0.1', port: 8008 }, connectAddress: { host: '127.0.0.1', port: 8008 } });
    assert.deepEqual(c.postgres.listen, { host: '127.0.0.1', port: 5432 });
    assert.deepEqual(c.postgres.connectAddress, c.postgres.listen);
    assert.equal(c.postgres.binDir, '/usr/lib/postgresql/15/bin');
    assert.equal(c.postgres.socketDir, '/data/demo-1/run');
    assert.equal(c.postgres.runAsUser, undefined);
    assert.deepEqual(c.postgres.superuser, { username: 'postgres', password: 'su' });
    assert.deepEqual(c.postgres.replication, { username: 'replicator', password: 'repl' });
    assert.deepEqual(c.tags, { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false });
    assert.deepEqual(c.bootstrapDynamicConfig, DEFAULT_DYNAMIC_CONFIG);
    assert.deepEqual(c.log, { level: 'info' });
  });

  it('environment variables win over the file', () => {
    const c = accept(FULL, {
      WARDEN_NAME: 'demo-9',
      WARDEN_CLUSTER: 'other',
      WARDEN_ETCD_ENDPOINTS: 'http://10.0.0.1:2379, http://10.0.0.2:2379',
      WARDEN_RESTAPI_LISTEN: '127.0.0.1:9008',
      WARDEN_RESTAPI_CONNECT_ADDRESS: '[::1]:9008',
      WARDEN_PG_LISTEN: '127.0.0.1:6432',
      WARDEN_PG_DATA_DIR: '/srv/pg',
      WARDEN_PG_SOCKET_DIR: '/run/warden',
      WARDEN_PG_RUN_AS_USER: 'pgowner',
      WARDEN_PG_SUPERUSER_USERNAME: 'admin',
      WARDEN_PG_SUPERUSER_PASSWORD: 'from-env',
      WARDEN_PG_REPLICATION_PASSWORD_FILE: '/secrets/superuser',
      WARDEN_TAGS_NOFAILOVER: 'true',
      WARDEN_TAGS_FAILOVER_PRIORITY: '0',
      WARDEN_TAGS_NOSYNC: 'no',
      WARDEN_LOG_LEVEL: 'warn',
      WARDEN_UNRELATED: 'x',
    });
    assert.equal(c.name, 'demo-9');
    assert.equal(c.cluster, 'other');
    assert.deepEqual(c.etcdEndpoints, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
    assert.deepEqual(c.restApi, { listen: { host: '127.0.0.1', port: 9008 }, connectAddress: { host: '::1', port: 9008 } });
    assert.deepEqual(c.postgres.listen, { host: '127.0.0.1', port: 6432 });
    assert.deepEqual(c.postgres.connectAddress, { host: '127.0.0.1', port: 6432 });
    assert.equal(c.postgres.dataDir, '/srv/pg');
    assert.equal(c.postgres.socketDir, '/run/warden');
    assert.equal(c.postgres.runAsUser, 'pgowner');
    assert.deepEqual(c.postgres.superuser, { username: 'admin', password: 'from-env' });
    assert.deepEqual(c.postgres.replication, { username: 'replicator', password: 'su-secret' });
    assert.deepEqual(c.tags, { nofailover: true, failoverPriority: 0, nosync: false, noloadbalance: false });
    assert.equal(c.log.level, 'warn');
  });

  it('an empty variable counts as unset', () => {
    assert.equal(accept(MINIMAL, { WARDEN_NAME: '' }).name, 'demo-1');
  });

  it('the environment alone is enough when the file is empty', () => {
    const c = accept('', {
      WARDEN_NAME: 'demo-2',
      WARDEN_CLUSTER: 'demo',
      WARDEN_ETCD_ENDPOINTS: 'http://127.0.0.1:2379',
      WARDEN_PG_DATA_DIR: '/data/demo-2',
      WARDEN_PG_SUPERUSER_PASSWORD: 'a',
      WARDEN_PG_REPLICATION_PASSWORD: 'b',
    });
    assert.equal(c.name, 'demo-2');
    assert.equal(c.postgres.socketDir, '/data/run');
  });

  it('run_as_user defaults to postgres only for a root agent', () => {
    assert.equal(defaultRunAsUser(true), 'postgres');
    assert.equal(defaultRunAsUser(false), undefined);
    const c = accept(MINIMAL);
    assert.equal(withRunAsUserDefault(c, true).postgres.runAsUser, 'postgres');
    assert.equal(withRunAsUserDefault(c, false).postgres.runAsUser, undefined);
    const own = accept(MINIMAL, { WARDEN_PG_RUN_AS_USER: 'pgowner' });
    assert.equal(withRunAsUserDefault(own, true).postgres.runAsUser, 'pgowner');
  });

  it('host:port strings parse and format, IPv6 in brackets', () => {
    assert.deepEqual(parseHostPort('[::1]:5432'), { host: '::1', port: 5432 });
    assert.deepEqual(parseHostPort('db.example.com:5432'), { host: 'db.example.com', port: 5432 });
    assert.deepEqual(parseHostPort('*:8008'), { host: '*', port: 8008 });
    for (const bad of ['localhost', 'localhost:0', 'localhost:65536', '::1:5432', '300.1.1.1:5432', 'a b:1', ':5432']) {
      assert.equal(parseHostPort(bad), undefined, bad);
    }
    assert.equal(formatHostPort({ host: '::1', port: 5432 }), '[::1]:5432');
  });
});

/** Each case: the file, the environment, and the one expected error's location prefix and message. */
const errorCases: { name: string; text: string; env?: Env; at: string; message: RegExp }[] = [
  {
    name: 'a missing name names WARDEN_NAME too',
    text: MINIMAL.replace('name: demo-1\n', ''),
    at: 'agent.yaml:1:1: name',
    message: /^required: the member name, unique in the cluster; set name in agent\.yaml or WARDEN_NAME in the environment$/,
  },
  {
    name: 'a missing data dir is reported at the postgresql section',
    text: MINIMAL.replace('  data_dir: /data/demo-1/pg\n', ''),
    at: 'agent.yaml:4:1: postgresql.data_dir',
    message: /WARDEN_PG_DATA_DIR/,
  },
  {
    name: 'a member name that is not a DNS label is rejected',
    text: MINIMAL.replace('name: demo-1', 'name: Demo_1'),
    at: 'agent.yaml:1:1: name',
    message: /lowercase letters, digits and '-'/,
  },
  {
    name: 'a bad variable is named instead of a line',
    text: MINIMAL,
    env: { WARDEN_PG_LISTEN: 'localhost:99999' },
    at: 'environment: WARDEN_PG_LISTEN',
    message: /^must be host:port with a port from 1 to 65535 \(got "localhost:99999"\)$/,
  },
  {
    name: 'a bad boolean variable is named',
    text: MINIMAL,
    env: { WARDEN_TAGS_NOSYNC: 'maybe' },
    at: 'environment: WARDEN_TAGS_NOSYNC',
    message: /^must be true or false \(got "maybe"\)$/,
  },
  {
    name: 'a port out of range in the file is located',
    text: `${MINIMAL}restapi:\n  listen: 127.0.0.1:70000\n`,
    at: 'agent.yaml:10:3: restapi.listen',
    message: /^must be host:port with a port from 1 to 65535 \(got "127\.0\.0\.1:70000"\)$/,
  },
  {
    name: 'an etcd endpoint that is not an http URL is located at its list item',
    text: MINIMAL.replace('[http://127.0.0.1:2379]', '[http://127.0.0.1:2379, "ftp://x:1"]'),
    at: 'agent.yaml:3:44: etcd.endpoints[1]',
    message: /^must be an http:\/\/ or https:\/\/ URL/,
  },
  {
    name: 'a misspelt key suggests the right one',
    text: MINIMAL.replace('data_dir', 'data_dri'),
    at: 'agent.yaml:5:3: postgresql.data_dri',
    message: /^unknown field "data_dri"; did you mean "data_dir"\?$/,
  },
  {
    name: "Patroni's scope suggests cluster",
    text: MINIMAL.replace('cluster: demo', 'scope: demo'),
    at: 'agent.yaml:2:1: scope',
    message: /^unknown field "scope"; did you mean "cluster"\?$/,
  },
  {
    name: 'bootstrap.dcs breaking the timing rule is reported at its ttl',
    text: `${MINIMAL}bootstrap:\n  dcs:\n    ttl: 5\n    loop_wait: 5\n`,
    at: 'agent.yaml:11:5: bootstrap.dcs.ttl',
    message: /^loop_wait \+ 2 × retry_timeout must be ≤ ttl/,
  },
  {
    name: 'a password and a password file together are ambiguous',
    text: MINIMAL.replace('{ password: su }', '{ password: su, password_file: /secrets/superuser }'),
    at: 'agent.yaml:7:32: postgresql.authentication.superuser.password_file',
    message: /^set either postgresql\.authentication\.superuser\.password or postgresql\.authentication\.superuser\.password_file, not both$/,
  },
  {
    name: 'an unreadable password file is named at the line that names it',
    text: MINIMAL.replace('{ password: su }', '{ password_file: /secrets/missing }'),
    at: 'agent.yaml:7:18: postgresql.authentication.superuser.password_file',
    message: /^cannot read password file \/secrets\/missing: ENOENT/,
  },
  {
    name: 'a missing password names both ways to give one',
    text: MINIMAL.replace('    replication: { password: repl }\n', ''),
    at: 'agent.yaml:6:3: postgresql.authentication.replication.password',
    message: /WARDEN_PG_REPLICATION_PASSWORD or WARDEN_PG_REPLICATION_PASSWORD_FILE/,
  },
  {
    name: 'a certificate without its key',
    text: `${MINIMAL}restapi:\n  certfile: /tls/server.pem\n`,
    at: 'agent.yaml:9:1: restapi.keyfile',
    message: /^restapi\.certfile and restapi\.keyfile go together: set both or neither$/,
  },
  {
    name: 'verify_client without a CA to verify with',
    text: `${MINIMAL}restapi:\n  certfile: /tls/server.pem\n  keyfile: /tls/server.key\n  verify_client: required\n`,
    at: 'agent.yaml:12:3: restapi.verify_client',
    message: /^verify_client required needs restapi\.cafile/,
  },
  {
    name: 'a key file that is not PEM',
    text: `${MINIMAL}restapi:\n  certfile: /tls/server.pem\n  keyfile: /secrets/superuser\n`,
    at: 'agent.yaml:11:3: restapi.keyfile',
    message: /^\/secrets\/superuser is not a PEM file with a PRIVATE KEY/,
  },
  {
    name: 'an unknown verify_client mode',
    text: `${MINIMAL}restapi:\n  certfile: /tls/server.pem\n  keyfile: /tls/server.key\n  cafile: /tls/ca.pem\n  verify_client: maybe\n`,
    at: 'agent.yaml:13:3: restapi.verify_client',
    message: /^must be none, optional or required \(got "maybe"\)$/,
  },
  {
    name: 'a relative data dir is rejected',
    text: MINIMAL.replace('/data/demo-1/pg', 'data/demo-1'),
    at: 'agent.yaml:5:3: postgresql.data_dir',
    message: /^must be an absolute path \(got "data\/demo-1"\)$/,
  },
  {
    name: 'a wildcard listen address needs a connect address',
    text: `${MINIMAL}restapi:\n  listen: 0.0.0.0:8008\n`,
    at: 'agent.yaml:9:1: restapi.connect_address',
    message: /^required when restapi\.listen is the wildcard 0\.0\.0\.0/,
  },
  {
    name: 'a socket path longer than the OS allows is reported at the data dir it derives from',
    text: MINIMAL.replace('/data/demo-1/pg', `/${'x'.repeat(100)}/pg`),
    at: 'agent.yaml:5:3: postgresql.data_dir',
    message: /longer than the 107 the OS allows; set postgresql\.socket_dir/,
  },
  {
    name: 'a wrong type is reported with the value',
    text: `${MINIMAL}tags:\n  failover_priority: high\n`,
    at: 'agent.yaml:10:3: tags.failover_priority',
    message: /^must be an integer ≥ 0 \(got "high"\)$/,
  },
  {
    name: 'a YAML syntax error is located',
    text: 'name: demo-1\ncluster: [demo\n',
    at: 'agent.yaml:3:1',
    message: /^YAML syntax error: /,
  },
];

describe('agent config: errors', () => {
  for (const c of errorCases) {
    it(c.name, () => {
      const errors = reject(c.text, c.env ?? {});
      assert.equal(errors.length, 1, errors.map(formatSpecError).join('\n'));
      const e = errors[0];
      assert.ok(e !== undefined);
      const formatted = formatSpecError(e);
      assert.ok(formatted.startsWith(`${c.at}: `), `${formatted}\n  does not start with ${c.at}`);
      assert.match(e.message, c.message);
    });
  }

  it('a missing name with an empty file and no environment names the variable', () => {
    const errors = reject('');
    assert.ok(errors.some((e) => formatSpecError(e) === 'agent.yaml:1:1: name: required: the member name, unique in the cluster; set name in agent.yaml or WARDEN_NAME in the environment'));
  });
});

describe('stringifyAgentConfig', () => {
  const input: AgentSettingsInput = {
    name: 'demo-2',
    cluster: 'demo',
    'etcd.endpoints': ['http://127.0.0.1:2379', 'http://127.0.0.1:2381'],
    'restapi.listen': { host: '127.0.0.1', port: 18008 },
    'postgresql.listen': { host: '::1', port: 15432 },
    'postgresql.data_dir': '/tmp/warden/demo-2/data',
    'postgresql.socket_dir': '/tmp/warden/demo-2/run',
    'postgresql.authentication.superuser.username': 'postgres',
    'postgresql.authentication.superuser.password_file': '/secrets/superuser',
    'postgresql.authentication.replication.username': 'replicator',
    'postgresql.authentication.replication.password_file': '/secrets/replication',
    'tags.failover_priority': 3,
    'bootstrap.dcs': { ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: 'on', postgresql: { use_pg_rewind: true, parameters: { work_mem: '8MB' } } },
    'log.level': 'debug',
  };

  it('writes a file that parses back to the same settings, with password file paths only', () => {
    const text = stringifyAgentConfig(input);
    assert.ok(!text.includes('su-secret'));
    assert.match(text, /password_file: \/secrets\/superuser/);
    const c = accept(text, {}, 'demo-2.yaml');
    assert.equal(c.name, 'demo-2');
    assert.deepEqual(c.etcdEndpoints, input['etcd.endpoints']);
    assert.deepEqual(c.restApi.connectAddress, { host: '127.0.0.1', port: 18008 });
    assert.deepEqual(c.postgres.listen, { host: '::1', port: 15432 });
    assert.equal(c.postgres.socketDir, '/tmp/warden/demo-2/run');
    assert.deepEqual(c.postgres.superuser, { username: 'postgres', password: 'su-secret' });
    assert.equal(c.tags.failoverPriority, 3);
    assert.equal(c.bootstrapDynamicConfig.synchronous_mode, 'on');
    assert.deepEqual(c.bootstrapDynamicConfig.postgresql.parameters, { work_mem: '8MB' });
    assert.equal(c.log.level, 'debug');
  });
});

describe('postgresql.archive', () => {
  const base = {
    name: 'demo-1',
    cluster: 'demo',
    'etcd.endpoints': ['http://127.0.0.1:2379'],
    'restapi.listen': { host: '127.0.0.1', port: 18008 },
    'postgresql.listen': { host: '127.0.0.1', port: 15432 },
    'postgresql.data_dir': '/tmp/warden/demo-1/data',
    'postgresql.authentication.superuser.password_file': '/secrets/superuser',
    'postgresql.authentication.replication.password_file': '/secrets/replication',
  } satisfies AgentSettingsInput;

  it('writes and reads back the member\'s pgbackrest.conf and stanza', () => {
    const text = stringifyAgentConfig({ ...base, 'postgresql.archive.pgbackrest_config': '/tmp/warden/demo-1/pgbackrest.conf', 'postgresql.archive.stanza': 'demo' });
    assert.deepEqual(accept(text).postgres.archive, { pgbackrestConfig: '/tmp/warden/demo-1/pgbackrest.conf', stanza: 'demo' });
  });

  it('leaves archiving off when the section is absent', () => {
    assert.equal(accept(stringifyAgentConfig(base)).postgres.archive, undefined);
  });

  it('takes both settings from WARDEN_PG_ARCHIVE_* variables', () => {
    const c = accept(stringifyAgentConfig(base), { WARDEN_PG_ARCHIVE_PGBACKREST_CONFIG: '/etc/warden/pgbackrest.conf', WARDEN_PG_ARCHIVE_STANZA: 'demo' });
    assert.deepEqual(c.postgres.archive, { pgbackrestConfig: '/etc/warden/pgbackrest.conf', stanza: 'demo' });
  });

  it('refuses a config file without a stanza, naming the missing setting', () => {
    const errors = reject(stringifyAgentConfig(base), { WARDEN_PG_ARCHIVE_PGBACKREST_CONFIG: '/etc/warden/pgbackrest.conf' });
    assert.match(errors.map(formatSpecError).join('\n'), /postgresql\.archive\.stanza: required: the pgBackRest stanza/);
  });

  it('reads create_stanza (node daemons set it), and refuses it without archiving', () => {
    const text = stringifyAgentConfig({ ...base, 'postgresql.archive.pgbackrest_config': '/tmp/warden/demo-1/pgbackrest.conf', 'postgresql.archive.stanza': 'demo', 'postgresql.archive.create_stanza': true });
    assert.deepEqual(accept(text).postgres.archive, { pgbackrestConfig: '/tmp/warden/demo-1/pgbackrest.conf', stanza: 'demo', createStanza: true });
    const errors = reject(stringifyAgentConfig({ ...base, 'postgresql.archive.create_stanza': true }));
    assert.match(errors.map(formatSpecError).join('\n'), /postgresql\.archive\.pgbackrest_config: required: create_stanza needs the pgbackrest\.conf of this member/);
  });

  it('refuses a relative config path', () => {
    const errors = reject(stringifyAgentConfig(base), { WARDEN_PG_ARCHIVE_PGBACKREST_CONFIG: 'pgbackrest.conf', WARDEN_PG_ARCHIVE_STANZA: 'demo' });
    assert.match(errors.map(formatSpecError).join('\n'), /WARDEN_PG_ARCHIVE_PGBACKREST_CONFIG/);
  });
});

describe('loadAgentConfig', () => {
  it('reads the file and its password files, naming a missing password file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-agent-'));
    try {
      const su = join(dir, 'su.pw');
      await writeFile(su, 'from-disk\n');
      const path = join(dir, 'agent.yaml');
      const text = MINIMAL.replace('{ password: su }', `{ password_file: ${su} }`).replace('{ password: repl }', `{ password_file: ${join(dir, 'nope.pw')} }`);
      await writeFile(path, text);
      const bad = await loadAgentConfig(path, {});
      assert.equal(bad.ok, false);
      if (!bad.ok) {
        assert.equal(bad.errors.length, 1);
        assert.match(formatSpecError(bad.errors[0] ?? assert.fail()), new RegExp(`^${path}:8:\\d+: postgresql\\.authentication\\.replication\\.password_file: cannot read password file ${join(dir, 'nope.pw')}: ENOENT`));
      }
      const good = await loadAgentConfig(path, { WARDEN_PG_REPLICATION_PASSWORD: 'r' });
      assert.equal(good.ok, true);
      if (good.ok) assert.deepEqual(good.config.postgres.superuser, { username: 'postgres', password: 'from-disk' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a missing config file is one clear error naming it', async () => {
    const r = await loadAgentConfig('/nonexistent/warden/agent.yaml', {});
    assert.equal(r.ok, false);
    if (!r.ok) assert.deepEqual(r.errors.map(formatSpecError), ['/nonexistent/warden/agent.yaml: agent config file not found']);
  });
});

describe('agent config: etcd authentication and TLS', () => {
  const withEtcd = (etcd: string): string => MINIMAL.replace(/etcd:.*\n( {2}endpoints:.*\n)?/, `${etcd}\n`);

  it('reads etcd.username with a password file and TLS material, and writes them back', () => {
    PASSWORDS['/secrets/etcd'] = 'etcd-secret\n';
    const c = accept(withEtcd('etcd: { endpoints: [https://10.0.0.1:2379], username: warden, password_file: /secrets/etcd, cacert: /tls/ca.pem, cert: /tls/server.pem, key: /tls/server.key }'));
    assert.deepEqual(c.etcdAuth, { username: 'warden', password: 'etcd-secret' });
    assert.deepEqual(c.etcdTls, { ca: CERT, cert: CERT, key: KEY });
    const text = stringifyAgentConfig({
      name: 'demo-1',
      cluster: 'demo',
      'etcd.endpoints': ['https://10.0.0.1:2379'],
      'etcd.username': 'warden',
      'etcd.password_file': '/secrets/etcd',
      'etcd.cacert': '/tls/ca.pem',
      'etcd.cert': '/tls/server.pem',
      'etcd.key': '/tls/server.key',
      'postgresql.data_dir': '/data/demo-1/pg',
      'postgresql.authentication.superuser.password_file': '/secrets/superuser',
      'postgresql.authentication.replication.password_file': '/secrets/replication',
      'tags.replicatefrom': 'demo-2',
      'tags.clonefrom': true,
    });
    assert.ok(!text.includes('etcd-secret'), 'only the password file is written');
    const back = accept(text);
    assert.deepEqual(back.etcdAuth, c.etcdAuth);
    assert.deepEqual(back.etcdTls, c.etcdTls);
    assert.equal(back.tags.replicatefrom, 'demo-2', 'writing a config back keeps replicatefrom');
    assert.equal(back.tags.clonefrom, true, 'and clonefrom');
  });

  it('takes the etcd password from WARDEN_ETCD_PASSWORD', () => {
    const c = accept(withEtcd('etcd: { endpoints: [http://127.0.0.1:2379], username: warden }'), { WARDEN_ETCD_PASSWORD: 'from-env' });
    assert.deepEqual(c.etcdAuth, { username: 'warden', password: 'from-env' });
  });

  it('refuses TLS settings with http:// endpoints, and a certificate without its key', () => {
    const tlsOnHttp = reject(withEtcd('etcd: { endpoints: [http://127.0.0.1:2379], cacert: /tls/ca.pem }'));
    assert.match(tlsOnHttp.map(formatSpecError).join('\n'), /etcd\.cacert: TLS settings need https:\/\/ etcd endpoints/);
    const half = reject(withEtcd('etcd: { endpoints: [https://10.0.0.1:2379], cert: /tls/server.pem }'));
    assert.match(half.map(formatSpecError).join('\n'), /etcd\.cert and etcd\.key go together/);
  });
});
