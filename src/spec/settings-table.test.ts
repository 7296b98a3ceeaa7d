import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../chaos/index.js';
import type { Random } from '../chaos/index.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../ha/dynamic-config.js';
import type { DynamicConfig } from '../ha/dynamic-config.js';
import {
  AGENT_CONFIG_TABLE,
  formatHostPort,
  formatSpecError,
  parseAgentConfig,
  parseRouterConfig,
  readSettings,
  ROUTER_CONFIG_TABLE,
  stringifyAgentConfig,
  stringifyRouterConfig,
  stringifySettings,
} from './index.js';
import type { AgentSettingsInput, HostPort, SettingSpec, SettingsTable } from './index.js';

type Values = Record<string, unknown>;
type Env = Record<string, string>;

// ---- random valid settings, driven by the tables themselves --------------------------------

/** Strings that YAML would read as something else unless the writer quotes them. */
const TRICKY_TEXT = ['warden', 'true', 'no', 'null', '~', '123', '0x1F', '1e3', 'a: b', '#hash', '- dash', 'x,y', "it's", 'ünïcode', '"quoted"', '[list]', '{map}', '*star', '&anchor', '%pct', '@at', 'trailing space '];
const PATH_SEGMENTS = ['data', 'pg', 'x.y', 'with space', 'ünï', '123', 'true', 'a-b_c', 'run'];
const COMMANDS = ['/usr/local/bin/notify', 'echo "$1" >> /tmp/log', '/bin/sh -c \'exit 0\'', 'true'];
const OS_USERS = ['postgres', 'pg_owner', 'u-1', '_svc'];
const HOSTS = ['127.0.0.1', '10.0.0.5', '::1', 'fe80::1', 'db.example.com', 'localhost', 'pg-1'];
const WILDCARDS = ['*', '0.0.0.0', '::'];
const URL_HOSTS = ['127.0.0.1', 'etcd-1.internal', '[::1]', '10.1.2.3'];
const IPS = ['10.0.0.0/8', '192.168.1.1', '::1', 'fe80::/10', '172.16.0.0/12'];
const DYNAMIC_CONFIGS: readonly DynamicConfig[] = [
  DEFAULT_DYNAMIC_CONFIG,
  { ...DEFAULT_DYNAMIC_CONFIG, ttl: 30, loop_wait: 10, retry_timeout: 10, synchronous_mode: 'quorum', synchronous_node_count: 2 },
  { ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: 'on', synchronous_mode_strict: true, pause: true, failsafe_mode: true, postgresql: { use_pg_rewind: false, parameters: { work_mem: '8MB', max_connections: 200 } } },
  { ...DEFAULT_DYNAMIC_CONFIG, maximum_lag_on_failover: 0, primary_start_timeout: 0, check_timeline: false, postgresql: { use_pg_rewind: true, parameters: { shared_buffers: '16MB', fsync: false } } },
];

function randomLabel(rnd: Random): string {
  const alnum = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const inner = `${alnum}-`;
  let s = 'abcdefghijklmnopqrstuvwxyz'[rnd.int(26)] ?? 'a';
  const n = rnd.int(12);
  for (let i = 0; i < n; i++) s += inner[rnd.int(inner.length)] ?? 'a';
  return s + (alnum[rnd.int(alnum.length)] ?? 'a');
}

function randomPath(rnd: Random): string {
  return `/${Array.from({ length: 1 + rnd.int(4) }, () => rnd.pick(PATH_SEGMENTS)).join('/')}`;
}

function randomList<T>(rnd: Random, pool: readonly T[]): T[] {
  return rnd.shuffle(pool).slice(0, 1 + rnd.int(3));
}

/** A valid value of setting `s`, in the normal form the reader produces. */
function randomValue(s: SettingSpec, rnd: Random): unknown {
  const t = s.type;
  switch (t.kind) {
    case 'text':
    case 'secret':
      return rnd.pick(TRICKY_TEXT);
    case 'name':
      return randomLabel(rnd);
    case 'path':
      return randomPath(rnd);
    case 'command':
      return rnd.pick(COMMANDS);
    case 'os-user':
      return rnd.pick(OS_USERS);
    case 'int': {
      const min = t.rule.min ?? 0;
      const max = t.rule.max ?? 2 ** 40;
      return rnd.pick([min, max, min + rnd.int(Math.min(max - min, 1_000_000) + 1)]);
    }
    case 'bool':
      return rnd.next() < 0.5;
    case 'enum':
      return rnd.pick(t.values);
    case 'host-port':
      return { host: t.wildcard && rnd.next() < 0.3 ? rnd.pick(WILDCARDS) : rnd.pick(HOSTS), port: 1 + rnd.int(65535) } satisfies HostPort;
    case 'etcd-urls':
      return randomList(rnd, URL_HOSTS).map((h) => `${rnd.pick(['http', 'https'])}://${h}:${2379 + rnd.int(20)}`);
    case 'ip-list':
      return randomList(rnd, IPS);
    case 'dynamic-config':
      return rnd.pick(DYNAMIC_CONFIGS);
  }
}

/**
 * Groups of settings that are set together: a pair (cert with key) both or neither, an either-or
 * (password or password_file) at most one; every other setting alone.
 */
function groups(table: SettingsTable): SettingSpec[][] {
  const byKey = new Map(table.settings.map((s) => [s.key, s]));
  const done = new Set<string>();
  const out: SettingSpec[][] = [];
  for (const s of table.settings) {
    if (done.has(s.key)) continue;
    const partner = s.pairedWith ?? s.exclusiveWith;
    const other = partner === undefined ? undefined : byKey.get(partner);
    const reverse = table.settings.find((o) => o.pairedWith === s.key || o.exclusiveWith === s.key);
    const group = [s, ...(other !== undefined ? [other] : reverse !== undefined ? [reverse] : [])];
    group.forEach((g) => done.add(g.key));
    out.push(group);
  }
  return out;
}

function isExclusive(group: readonly SettingSpec[]): boolean {
  return group.some((s) => s.exclusiveWith !== undefined);
}

/** Random settings that each pass their own check: required ones always, others about half the time. */
function randomSettings(table: SettingsTable, rnd: Random, options: { envOnly?: boolean } = {}): Values {
  const values: Values = {};
  for (const group of groups(table)) {
    if (options.envOnly === true && group.some((s) => s.env === undefined)) continue;
    const required = group.some((s) => s.required === true);
    if (!required && rnd.next() < 0.5) continue;
    const chosen = isExclusive(group) ? [rnd.pick(group)] : group;
    for (const s of chosen) values[s.key] = randomValue(s, rnd);
  }
  return values;
}

/** `values` with every unset setting that has a default filled in: what reading gives back. */
function withDefaults(table: SettingsTable, values: Values): Values {
  const out: Values = {};
  for (const s of table.settings) {
    const v = values[s.key] ?? s.default;
    if (v !== undefined) out[s.key] = v;
  }
  return out;
}

/** The text of a value in an environment variable. */
function envText(s: SettingSpec, v: unknown): string {
  if (s.type.kind === 'host-port') return formatHostPort(v as HostPort);
  if (Array.isArray(v)) return v.join(', ');
  return String(v);
}

function read(table: SettingsTable, text: string, env: Env = {}): Values {
  const r = readSettings(table, text, 'config.yaml', env);
  if (!r.ok) assert.fail(`expected the file to read, got:\n${r.errors.map(formatSpecError).join('\n')}\n---\n${text}`);
  return { ...r.values };
}

/** Random agent settings adjusted to pass the cross-setting rules the resolver adds to the table's. */
function resolvable(v: Values): Values {
  const out: Values = { ...v };
  const tls = ['etcd.cacert', 'etcd.cert', 'etcd.key'].some((k) => out[k] !== undefined);
  if (tls) out['etcd.endpoints'] = (out['etcd.endpoints'] as string[]).map((u) => u.replace(/^http:/, 'https:'));
  for (const role of ['superuser', 'replication']) {
    const base = `postgresql.authentication.${role}`;
    if (out[`${base}.password`] === undefined && out[`${base}.password_file`] === undefined) out[`${base}.password`] = 'pw';
  }
  for (const base of ['etcd', 'restapi.authentication']) {
    if (out[`${base}.username`] !== undefined && out[`${base}.password`] === undefined && out[`${base}.password_file`] === undefined) out[`${base}.password_file`] = '/secrets/pw';
  }
  if ((out['postgresql.archive.pgbackrest_config'] === undefined) !== (out['postgresql.archive.stanza'] === undefined)) {
    out['postgresql.archive.pgbackrest_config'] ??= '/etc/pgbackrest.conf';
    out['postgresql.archive.stanza'] ??= 'demo';
  }
  // bootstrap.method pgbackrest and its data source file come together.
  if (out['bootstrap.method'] === 'pgbackrest') out['bootstrap.pgbackrest.data_source'] ??= '/var/lib/warden/data-source.json';
  else delete out['bootstrap.pgbackrest.data_source'];
  if (out['restapi.certfile'] === undefined) {
    delete out['restapi.verify_client'];
    delete out['restapi.cafile'];
  } else if (out['restapi.verify_client'] !== undefined && out['restapi.verify_client'] !== 'none') out['restapi.cafile'] ??= '/tls/ca.pem';
  for (const section of ['restapi', 'postgresql']) {
    const listen = out[`${section}.listen`] as HostPort | undefined;
    if (listen !== undefined && ['*', '0.0.0.0', '::'].includes(listen.host)) out[`${section}.connect_address`] ??= { host: '10.0.0.1', port: listen.port };
  }
  return out;
}

const TABLES = { agent: AGENT_CONFIG_TABLE, router: ROUTER_CONFIG_TABLE } as const;
const CASES = 300;

describe('settings tables: each table is consistent', () => {
  for (const [kind, table] of Object.entries(TABLES)) {
    it(`${kind}: keys and variables are unique, pairs and either-ors name real settings, defaults read back as themselves`, () => {
      const keys = table.settings.map((s) => s.key);
      assert.equal(new Set(keys).size, keys.length, 'duplicate key');
      const vars = table.settings.flatMap((s) => (s.env === undefined ? [] : [s.env]));
      assert.equal(new Set(vars).size, vars.length, 'duplicate variable');
      for (const s of table.settings) {
        for (const other of [s.pairedWith, s.exclusiveWith]) if (other !== undefined) assert.ok(keys.includes(other), `${s.key} names ${other}`);
        assert.ok(!(s.required === true && s.default !== undefined), `${s.key} is required and has a default`);
        assert.ok(s.key.split('.').every((part) => !keys.includes(part) || part === s.key), `${s.key} sits under a setting`);
      }
      // Each default, written explicitly for a setting that has one, reads back to the same value.
      const text = stringifySettings({ ...table, settings: table.settings.map(({ default: _default, ...s }) => s as SettingSpec) }, withDefaults(table, randomSettings(table, mulberry32(1))), '');
      assert.deepEqual(read(table, text), withDefaults(table, randomSettings(table, mulberry32(1))));
    });
  }
});

describe('settings tables: write then read gives the same settings', () => {
  for (const [kind, table] of Object.entries(TABLES)) {
    it(`${CASES} random ${kind} configs read back identically after writing (seeded)`, () => {
      const rnd = mulberry32(20_261_202);
      for (let i = 0; i < CASES; i++) {
        const values = randomSettings(table, rnd);
        const text = stringifySettings(table, values, ` case ${i}`);
        assert.deepEqual(read(table, text), withDefaults(table, values), `case ${i}:\n${text}`);
      }
    });

    it(`${CASES} random ${kind} environments override the file setting by setting (seeded)`, () => {
      const rnd = mulberry32(7_031_977);
      for (let i = 0; i < CASES; i++) {
        const file = randomSettings(table, rnd);
        const fromEnv = randomSettings(table, rnd, { envOnly: true });
        const env: Env = {};
        for (const s of table.settings) if (s.env !== undefined && fromEnv[s.key] !== undefined) env[s.env] = envText(s, fromEnv[s.key]);
        // A variable for one of password/password_file replaces whichever of the two the file gave.
        const expected: Values = { ...file };
        for (const group of groups(table)) {
          if (isExclusive(group) && group.some((s) => fromEnv[s.key] !== undefined)) group.forEach((s) => delete expected[s.key]);
        }
        Object.assign(expected, fromEnv);
        const text = stringifySettings(table, file, ` case ${i}`);
        assert.deepEqual(read(table, text, env), withDefaults(table, expected), `case ${i}: env ${JSON.stringify(env)}\n${text}`);
      }
    });
  }

  it('writing a read agent config back is a fixed point, down to the AgentConfig it resolves to', () => {
    const rnd = mulberry32(42);
    const pem = '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n';
    let resolved = 0;
    for (let i = 0; i < CASES; i++) {
      const text = stringifySettings(AGENT_CONFIG_TABLE, resolvable(randomSettings(AGENT_CONFIG_TABLE, rnd)), ` case ${i}`);
      const again = stringifySettings(AGENT_CONFIG_TABLE, read(AGENT_CONFIG_TABLE, text), ` case ${i}`);
      assert.equal(again, text, `case ${i}`);
      const a = parseAgentConfig(text, 'a.yaml', {}, { readPasswordFile: () => pem });
      const b = parseAgentConfig(again, 'a.yaml', {}, { readPasswordFile: () => pem });
      assert.deepEqual(b, a, `case ${i}`);
      if (a.ok) resolved++;
    }
    // resolvable() avoids the cross-setting rules bar a few (two listen addresses alike, a socket path too long).
    assert.ok(resolved > CASES * 0.9, `only ${resolved} of ${CASES} resolved`);
  });

  it('a RouterConfig writes back to a file that reads to the same RouterConfig', () => {
    const rnd = mulberry32(99);
    let checked = 0;
    for (let i = 0; i < CASES; i++) {
      const parsed = parseRouterConfig(stringifySettings(ROUTER_CONFIG_TABLE, randomSettings(ROUTER_CONFIG_TABLE, rnd), ''), 'r.yaml', {});
      if (!parsed.ok) continue;
      checked++;
      const back = parseRouterConfig(stringifyRouterConfig(parsed.config), 'r.yaml', {});
      assert.deepEqual(back, parsed, `case ${i}`);
    }
    assert.ok(checked > CASES / 3, `only ${checked} of ${CASES} configs were valid`);
  });

  it('the agent writer keeps every setting, replicatefrom and clonefrom included', () => {
    const all: AgentSettingsInput = {
      name: 'demo-1',
      cluster: 'demo',
      'etcd.endpoints': ['https://10.0.0.1:2379'],
      'etcd.username': 'warden',
      'etcd.password_file': '/secrets/etcd',
      'etcd.cacert': '/tls/ca.pem',
      'etcd.cert': '/tls/client.pem',
      'etcd.key': '/tls/client.key',
      'restapi.listen': { host: '0.0.0.0', port: 8008 },
      'restapi.connect_address': { host: '10.0.0.11', port: 8008 },
      'restapi.authentication.username': 'admin',
      'restapi.authentication.password_file': '/secrets/rest',
      'restapi.allowlist': ['10.0.0.0/8', '::1'],
      'restapi.certfile': '/tls/api.pem',
      'restapi.keyfile': '/tls/api.key',
      'restapi.cafile': '/tls/ca.pem',
      'restapi.verify_client': 'required',
      'postgresql.listen': { host: '0.0.0.0', port: 5432 },
      'postgresql.connect_address': { host: '10.0.0.11', port: 5432 },
      'postgresql.data_dir': '/var/lib/warden/data',
      'postgresql.bin_dir': '/opt/pg/bin',
      'postgresql.socket_dir': '/run/warden',
      'postgresql.run_as_user': 'pgowner',
      'postgresql.pre_promote': '/usr/local/bin/fence',
      'postgresql.callbacks.on_start': '/usr/local/bin/cb',
      'postgresql.callbacks.on_stop': '/usr/local/bin/cb',
      'postgresql.callbacks.on_role_change': '/usr/local/bin/cb',
      'postgresql.authentication.superuser.username': 'su',
      'postgresql.authentication.superuser.password': 'inline',
      'postgresql.authentication.replication.username': 'repl',
      'postgresql.authentication.replication.password_file': '/secrets/repl',
      'postgresql.archive.pgbackrest_config': '/etc/pgbackrest.conf',
      'postgresql.archive.stanza': 'demo',
      'postgresql.archive.create_stanza': true,
      'tags.nofailover': true,
      'tags.failover_priority': 0,
      'tags.nosync': true,
      'tags.noloadbalance': true,
      'tags.replicatefrom': 'demo-2',
      'tags.clonefrom': false,
      'bootstrap.dcs': { ...DEFAULT_DYNAMIC_CONFIG, ttl: 30, loop_wait: 10, retry_timeout: 10 },
      'bootstrap.method': 'pgbackrest',
      'bootstrap.pgbackrest.data_source': '/var/lib/warden/data-source.json',
      'log.level': 'debug',
      'log.file': '/var/log/warden/agent.log',
    };
    // Every setting of the table is in `all` but the unchosen half of each either-or: a setting
    // added to the table without a value here fails this test.
    const left = AGENT_CONFIG_TABLE.settings.map((s) => s.key).filter((k) => !Object.hasOwn(all, k));
    assert.deepEqual(left, ['etcd.password', 'restapi.authentication.password', 'postgresql.authentication.superuser.password_file', 'postgresql.authentication.replication.password']);
    const text = stringifyAgentConfig(all);
    assert.match(text, /replicatefrom: demo-2/);
    assert.match(text, /clonefrom: false/);
    assert.deepEqual(read(AGENT_CONFIG_TABLE, text), withDefaults(AGENT_CONFIG_TABLE, all));
  });
});

const AGENT_MINIMAL = `name: demo-1
cluster: demo
etcd: { endpoints: [http://127.0.0.1:2379] }
postgresql:
  data_dir: /data/demo-1/pg
  authentication:
    superuser: { password: su }
    replication: { password: repl }
`;
const ROUTER_MINIMAL = 'cluster: demo\netcd: { endpoints: [http://127.0.0.1:2379] }\nlisten: { rw: 127.0.0.1:5000 }\n';

/** Each case: the file, the environment, and the one error it must produce, located at the key. */
const badInputs: { name: string; kind: 'agent' | 'router'; text: string; env?: Env; error: string }[] = [
  {
    name: 'a number where a boolean belongs',
    kind: 'agent',
    text: `${AGENT_MINIMAL}tags: { nofailover: 3 }\n`,
    error: 'agent.yaml:9:9: tags.nofailover: must be true or false (got 3)',
  },
  {
    name: 'a mapping where a string belongs',
    kind: 'agent',
    text: `${AGENT_MINIMAL}log: { file: { path: /x } }\n`,
    error: 'agent.yaml:9:8: log.file: must be a non-empty string (got a mapping)',
  },
  {
    name: 'a string where a section belongs',
    kind: 'agent',
    text: `${AGENT_MINIMAL}tags: nofailover\n`,
    error: 'agent.yaml:9:1: tags: must be a mapping (got "nofailover")',
  },
  {
    name: 'a negative priority from the environment',
    kind: 'agent',
    text: AGENT_MINIMAL,
    env: { WARDEN_TAGS_FAILOVER_PRIORITY: '-1' },
    error: 'environment: WARDEN_TAGS_FAILOVER_PRIORITY: must be an integer ≥ 0 (got "-1")',
  },
  {
    name: 'a fractional priority in the file',
    kind: 'agent',
    text: `${AGENT_MINIMAL}tags: { failover_priority: 1.5 }\n`,
    error: 'agent.yaml:9:9: tags.failover_priority: must be an integer ≥ 0 (got 1.5)',
  },
  {
    name: 'a held-connection limit above its range',
    kind: 'router',
    text: `${ROUTER_MINIMAL}maxHeld: 2000000\n`,
    error: 'router.yaml:4:1: maxHeld: must be an integer from 0 to 1000000 (got 2000000)',
  },
  {
    name: 'a connect timeout below its range, from the environment',
    kind: 'router',
    text: ROUTER_MINIMAL,
    env: { WARDEN_ROUTER_CONNECT_TIMEOUT_MS: '5' },
    error: 'environment: WARDEN_ROUTER_CONNECT_TIMEOUT_MS: must be an integer from 10 to 600000 (got "5")',
  },
  {
    name: 'a log level that does not exist',
    kind: 'router',
    text: `${ROUTER_MINIMAL}log: { level: loud }\n`,
    error: 'router.yaml:4:8: log.level: must be one of trace, debug, info, warn, error, fatal (got "loud")',
  },
  {
    name: 'an etcd URL with another scheme, from the environment',
    kind: 'agent',
    text: AGENT_MINIMAL,
    env: { WARDEN_ETCD_ENDPOINTS: 'http://127.0.0.1:2379,unix:///run/etcd.sock' },
    error: 'environment: WARDEN_ETCD_ENDPOINTS: must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:2379 (got "unix:///run/etcd.sock")',
  },
  {
    name: 'an allowlist entry with too many prefix bits',
    kind: 'agent',
    text: `${AGENT_MINIMAL}restapi: { allowlist: [10.0.0.0/8, 10.0.0.0/33] }\n`,
    error: 'agent.yaml:9:36: restapi.allowlist[1]: must be an IP address or CIDR block, e.g. 10.0.0.0/8 (got "10.0.0.0/33")',
  },
  {
    name: 'a wildcard connect address',
    kind: 'agent',
    text: `${AGENT_MINIMAL}restapi: { connect_address: "0.0.0.0:8008" }\n`,
    error: 'agent.yaml:9:12: restapi.connect_address: must be an address other members can connect to, not the wildcard 0.0.0.0',
  },
  {
    name: 'a replicatefrom that is not a member name',
    kind: 'agent',
    text: `${AGENT_MINIMAL}tags: { replicatefrom: Demo_2 }\n`,
    error: `agent.yaml:9:9: tags.replicatefrom: must contain only lowercase letters, digits and '-', and start and end with a letter or digit (got "Demo_2")`,
  },
  {
    name: 'a relative log file for the router',
    kind: 'router',
    text: `${ROUTER_MINIMAL}log: { file: router.log }\n`,
    error: 'router.yaml:4:8: log.file: must be an absolute path (got "router.log")',
  },
  {
    name: 'a misspelt tag suggests the right one',
    kind: 'agent',
    text: `${AGENT_MINIMAL}tags: { replicate_from: demo-2 }\n`,
    error: 'agent.yaml:9:9: tags.replicate_from: unknown field "replicate_from"; did you mean "replicatefrom"?',
  },
  {
    name: 'a misspelt password is not also reported as a missing one',
    kind: 'agent',
    text: AGENT_MINIMAL.replace('{ password: su }', '{ pasword: su }'),
    error: 'agent.yaml:7:18: postgresql.authentication.superuser.pasword: unknown field "pasword"; did you mean "password"?',
  },
  {
    name: "another tool's spelling is hinted",
    kind: 'agent',
    text: AGENT_MINIMAL.replace('etcd: { endpoints: [http://127.0.0.1:2379] }', 'etcd: { endpoints: [https://127.0.0.1:2379], ca_cert: /tls/ca.pem }'),
    error: 'agent.yaml:3:46: etcd.ca_cert: unknown field "ca_cert"; did you mean "cacert"?',
  },
  {
    name: 'an unknown key with no near match lists the section\'s keys',
    kind: 'router',
    text: `${ROUTER_MINIMAL}listen: { rw: 127.0.0.1:5000, zzz: 1 }\n`.replace('listen: { rw: 127.0.0.1:5000 }\n', ''),
    error: 'router.yaml:3:31: listen.zzz: unknown field "zzz" (expected one of: admin, ro, rw)',
  },
  {
    name: 'half a pair is reported at the missing half',
    kind: 'router',
    text: ROUTER_MINIMAL.replace('http://', 'https://'),
    env: { WARDEN_ROUTER_ETCD_KEY: '/tls/client.key' },
    error: 'router.yaml:2:1: etcd.cert: etcd.cert and etcd.key go together: set both or neither',
  },
  {
    name: 'both ways to give a password from the environment',
    kind: 'agent',
    text: AGENT_MINIMAL,
    env: { WARDEN_PG_SUPERUSER_PASSWORD: 'a', WARDEN_PG_SUPERUSER_PASSWORD_FILE: '/secrets/su' },
    error: 'environment: WARDEN_PG_SUPERUSER_PASSWORD_FILE: set only one of WARDEN_PG_SUPERUSER_PASSWORD and WARDEN_PG_SUPERUSER_PASSWORD_FILE',
  },
  {
    name: 'a missing required setting names its variable',
    kind: 'router',
    text: ROUTER_MINIMAL.replace('cluster: demo\n', ''),
    error: 'router.yaml:1:1: cluster: required: the cluster name; set cluster in router.yaml or WARDEN_ROUTER_CLUSTER in the environment',
  },
];

describe('settings tables: bad input is one precise error', () => {
  for (const c of badInputs) {
    it(c.name, () => {
      const file = `${c.kind}.yaml`;
      const r = c.kind === 'agent' ? parseAgentConfig(c.text, file, c.env ?? {}, { readPasswordFile: () => 'x' }) : parseRouterConfig(c.text, file, c.env ?? {});
      assert.equal(r.ok, false, `expected an error for:\n${c.text}`);
      if (r.ok) return;
      assert.deepEqual(r.errors.map(formatSpecError), [c.error]);
    });
  }
});
