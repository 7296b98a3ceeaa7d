import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWardenError } from '../core/errors.js';
import type { ReplicationRole, RuntimeSettings } from './postgres.js';
import {
  INCLUDE_LINE,
  confValue,
  conninfoValue,
  hbaNetworks,
  pgpassField,
  primaryConninfo,
  renderHba,
  renderPgpass,
  renderWardenConf,
  rewindSourceConninfo,
  wardenSettings,
  withIncludeLine,
  type SettingValue,
  type WardenSettingsInput,
} from './server-config.js';

const CONFIG: WardenSettingsInput['config'] = {
  name: 'demo-2',
  listen: { host: '10.0.5.7', port: 5433 },
  socketDir: '/run/warden/demo-2',
  replication: { username: 'replicator', password: 'r-secret' },
  parameters: { max_connections: 200 },
};

function settingsFor(
  role: ReplicationRole,
  over: { parameters?: Record<string, SettingValue>; runtime?: RuntimeSettings; controlSettings?: WardenSettingsInput['controlSettings'] } = {},
): ReturnType<typeof wardenSettings> {
  return wardenSettings({
    config: { ...CONFIG, ...(over.parameters === undefined ? {} : { parameters: over.parameters }) },
    runtime: over.runtime ?? {},
    role,
    pgpassPath: '/var/lib/warden/demo-2.pgpass',
    ...(over.controlSettings === undefined ? {} : { controlSettings: over.controlSettings }),
  });
}

describe('warden.conf settings', () => {
  it('sets what replication, rewind and the agent need, whatever the role', () => {
    const { settings } = settingsFor({ kind: 'primary' });
    assert.equal(settings.get('listen_addresses'), '10.0.5.7');
    assert.equal(settings.get('port'), 5433);
    assert.equal(settings.get('unix_socket_directories'), '/run/warden/demo-2');
    assert.equal(settings.get('wal_level'), 'replica');
    assert.equal(settings.get('hot_standby'), true);
    assert.equal(settings.get('wal_log_hints'), true);
    assert.equal(settings.get('password_encryption'), 'scram-sha-256');
    assert.equal(settings.get('recovery_target_timeline'), 'latest');
  });

  const parameterCases: { name: string; parameters: Record<string, SettingValue>; key: string; want: SettingValue | undefined; ignored?: string[] }[] = [
    { name: 'keeps a user parameter Warden does not set', parameters: { max_connections: 200 }, key: 'max_connections', want: 200 },
    { name: 'uses its default when the user sets none', parameters: {}, key: 'wal_keep_size', want: '128MB' },
    { name: 'lets a user parameter override a default', parameters: { hot_standby_feedback: 'off' }, key: 'hot_standby_feedback', want: 'off' },
    { name: 'raises a parameter below its floor to the floor', parameters: { max_wal_senders: 3 }, key: 'max_wal_senders', want: 10 },
    { name: 'keeps a parameter above its floor', parameters: { max_replication_slots: 20 }, key: 'max_replication_slots', want: 20 },
    { name: 'reads a floor parameter given as text', parameters: { max_wal_senders: '16' }, key: 'max_wal_senders', want: 16 },
    { name: 'uses the floor for a floor parameter that is not a number', parameters: { max_wal_senders: 'many' }, key: 'max_wal_senders', want: 10 },
    { name: 'ignores and names a parameter Warden sets itself', parameters: { port: 9999, wal_level: 'minimal' }, key: 'port', want: 5433, ignored: ['port', 'wal_level'] },
  ];
  for (const c of parameterCases) {
    it(c.name, () => {
      const { settings, ignored } = settingsFor({ kind: 'primary' }, { parameters: c.parameters });
      assert.equal(settings.get(c.key), c.want);
      assert.deepEqual(ignored, c.ignored ?? []);
    });
  }

  it('takes the runtime parameters instead of the configured ones once they are given', () => {
    const { settings } = settingsFor({ kind: 'primary' }, { runtime: { parameters: { work_mem: '8MB' } } });
    assert.equal(settings.get('work_mem'), '8MB');
    assert.equal(settings.get('max_connections'), undefined);
  });

  const standbyNameCases: { name: string; role: ReplicationRole; runtime: RuntimeSettings; want: string }[] = [
    { name: 'gives a primary the synchronous standby names in force', role: { kind: 'primary' }, runtime: { synchronousStandbyNames: 'FIRST 1 ("demo-3")' }, want: 'FIRST 1 ("demo-3")' },
    { name: 'gives a primary without synchronous standbys the empty list', role: { kind: 'primary' }, runtime: {}, want: '' },
    { name: 'never gives a replica synchronous standbys', role: { kind: 'replica' }, runtime: { synchronousStandbyNames: '*' }, want: '' },
  ];
  for (const c of standbyNameCases) {
    it(c.name, () => {
      assert.equal(settingsFor(c.role, { runtime: c.runtime }).settings.get('synchronous_standby_names'), c.want);
    });
  }

  it('points a replica at its upstream with a slot', () => {
    const { settings } = settingsFor({ kind: 'replica', upstream: { host: '10.0.5.8', port: 5432 }, slotName: 'demo_2' });
    assert.equal(
      settings.get('primary_conninfo'),
      "host='10.0.5.8' port=5432 user='replicator' passfile='/var/lib/warden/demo-2.pgpass' application_name='demo-2' connect_timeout=2",
    );
    assert.equal(settings.get('primary_slot_name'), 'demo_2');
  });

  it('gives a replica without an upstream neither conninfo nor slot', () => {
    const { settings } = settingsFor({ kind: 'replica', slotName: 'demo_2' });
    assert.equal(settings.has('primary_conninfo'), false);
    assert.equal(settings.has('primary_slot_name'), false);
  });

  it('refuses a slot name PostgreSQL would refuse', () => {
    for (const slotName of ['Demo-2', '', 'a'.repeat(64), 'demo 2']) {
      assert.throws(
        () => settingsFor({ kind: 'replica', upstream: { host: '10.0.5.8', port: 5432 }, slotName }),
        (e: unknown) => isWardenError(e, 'config-invalid'),
        slotName,
      );
    }
  });
});

describe('warden.conf hot-standby values against pg_control', () => {
  // A replica restarted before it replayed its primary's lowering of max_connections (150 → 120)
  // would refuse to start with 120: "insufficient parameter settings".
  const cases: {
    name: string;
    role: ReplicationRole;
    parameters: Record<string, SettingValue>;
    control: WardenSettingsInput['controlSettings'];
    key: string;
    want: SettingValue | undefined;
    raised: { name: string; configured: number; control: number }[];
  }[] = [
    {
      name: 'a replica runs with pg_control\'s higher value',
      role: { kind: 'replica' },
      parameters: { max_connections: 120 },
      control: { max_connections: 150 },
      key: 'max_connections',
      want: 150,
      raised: [{ name: 'max_connections', configured: 120, control: 150 }],
    },
    { name: 'a replica keeps a configured value at pg_control\'s', role: { kind: 'replica' }, parameters: { max_connections: 150 }, control: { max_connections: 150 }, key: 'max_connections', want: 150, raised: [] },
    { name: 'a replica keeps a configured value above pg_control\'s', role: { kind: 'replica' }, parameters: { max_connections: 200 }, control: { max_connections: 150 }, key: 'max_connections', want: 200, raised: [] },
    { name: 'a primary keeps its lower value (it writes the change for its standbys)', role: { kind: 'primary' }, parameters: { max_connections: 120 }, control: { max_connections: 150 }, key: 'max_connections', want: 120, raised: [] },
    {
      name: 'a value given as text is compared as a number',
      role: { kind: 'replica' },
      parameters: { max_worker_processes: '4' },
      control: { max_worker_processes: 8 },
      key: 'max_worker_processes',
      want: 8,
      raised: [{ name: 'max_worker_processes', configured: 4, control: 8 }],
    },
    {
      name: 'an unset parameter counts as PostgreSQL\'s default',
      role: { kind: 'replica' },
      parameters: {},
      control: { max_locks_per_transaction: 128, max_prepared_transactions: 0 },
      key: 'max_locks_per_transaction',
      want: 128,
      raised: [{ name: 'max_locks_per_transaction', configured: 64, control: 128 }],
    },
    { name: 'a value that is not an integer is left to PostgreSQL', role: { kind: 'replica' }, parameters: { max_connections: 'lots' }, control: { max_connections: 150 }, key: 'max_connections', want: 'lots', raised: [] },
    { name: 'Warden\'s floor of max_wal_senders counts as configured', role: { kind: 'replica' }, parameters: {}, control: { max_wal_senders: 10 }, key: 'max_wal_senders', want: 10, raised: [] },
    { name: 'without pg_control\'s values the configured ones stand', role: { kind: 'replica' }, parameters: { max_connections: 120 }, control: undefined, key: 'max_connections', want: 120, raised: [] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { settings, raised } = settingsFor(c.role, { parameters: c.parameters, controlSettings: c.control });
      assert.equal(settings.get(c.key), c.want);
      assert.deepEqual(raised, c.raised);
    });
  }
});

describe('warden.conf archive settings', () => {
  const ARCHIVE = { archiveCommand: "pgbackrest '--config=/w/m1/pgbackrest.conf' '--stanza=demo' archive-push \"%p\"", restoreCommand: "pgbackrest '--config=/w/m1/pgbackrest.conf' '--stanza=demo' archive-get %f \"%p\"" };
  const withArchive = (role: ReplicationRole, parameters: Record<string, SettingValue> = {}): ReturnType<typeof wardenSettings> =>
    wardenSettings({ config: { ...CONFIG, parameters, archive: ARCHIVE }, runtime: {}, role, pgpassPath: '/p' });

  const cases: ReadonlyArray<readonly [string, ReplicationRole, string, SettingValue | undefined]> = [
    ['turns archiving on for a primary (on, not always: only the leader archives)', { kind: 'primary' }, 'archive_mode', 'on'],
    ['keeps archive_mode on for a replica, which does not archive while in recovery and does once promoted', { kind: 'replica', upstream: { host: '10.0.5.8', port: 5432 } }, 'archive_mode', 'on'],
    ['gives a primary the archive command', { kind: 'primary' }, 'archive_command', ARCHIVE.archiveCommand],
    ['gives a replica the restore command for when streaming cannot serve it', { kind: 'replica', upstream: { host: '10.0.5.8', port: 5432 } }, 'restore_command', ARCHIVE.restoreCommand],
    ['archives at least once a minute on a quiet cluster', { kind: 'primary' }, 'archive_timeout', '60s'],
  ];
  for (const [name, role, key, want] of cases) {
    it(name, () => assert.equal(withArchive(role).settings.get(key), want));
  }

  it('ignores and names archive parameters of the user when Warden archives', () => {
    const { settings, ignored } = withArchive({ kind: 'primary' }, { archive_mode: 'off', archive_command: '/bin/true', archive_timeout: '5min' });
    assert.equal(settings.get('archive_mode'), 'on');
    assert.equal(settings.get('archive_command'), ARCHIVE.archiveCommand);
    assert.equal(settings.get('archive_timeout'), '5min');
    assert.deepEqual(ignored.sort(), ['archive_command', 'archive_mode']);
  });

  it('leaves archiving to the user\'s parameters when no archive is configured', () => {
    const { settings, ignored } = settingsFor({ kind: 'primary' }, { parameters: { archive_mode: 'on', archive_command: '/bin/true' } });
    assert.equal(settings.get('archive_command'), '/bin/true');
    assert.equal(settings.has('archive_timeout'), false);
    assert.deepEqual(ignored, []);
  });
});

describe('warden.conf text', () => {
  const valueCases: { name: string; value: SettingValue; want: string }[] = [
    { name: 'writes true as on', value: true, want: "'on'" },
    { name: 'writes false as off', value: false, want: "'off'" },
    { name: 'quotes numbers', value: 200, want: "'200'" },
    { name: 'doubles single quotes', value: "it's", want: "'it''s'" },
    { name: 'escapes backslashes', value: 'C:\\x', want: "'C:\\\\x'" },
  ];
  for (const c of valueCases) {
    it(c.name, () => {
      assert.equal(confValue(c.value), c.want);
    });
  }

  it('writes one sorted line per setting under a header', () => {
    const text = renderWardenConf(new Map<string, SettingValue>([['port', 5433], ['hot_standby', true], ['listen_addresses', '10.0.5.7']]));
    assert.equal(
      text,
      "# Written by Warden (configure()); edits are overwritten. Set parameters in the cluster config.\nhot_standby = 'on'\nlisten_addresses = '10.0.5.7'\nport = '5433'\n",
    );
  });
});

describe('the include line in postgresql.conf', () => {
  const cases: { name: string; conf: string; want: string | undefined }[] = [
    { name: 'appends it to a file that ends with a newline', conf: 'max_connections = 100\n', want: `max_connections = 100\n\n# Added by Warden: its settings win over the lines above.\n${INCLUDE_LINE}\n` },
    { name: 'ends the last line first when it has no newline', conf: 'max_connections = 100', want: `max_connections = 100\n\n# Added by Warden: its settings win over the lines above.\n${INCLUDE_LINE}\n` },
    { name: 'writes it into an empty file', conf: '', want: `\n# Added by Warden: its settings win over the lines above.\n${INCLUDE_LINE}\n` },
    { name: 'leaves a file that has it alone', conf: `a = 1\n${INCLUDE_LINE}\nb = 2\n`, want: undefined },
    { name: 'recognises it with surrounding blanks', conf: `  ${INCLUDE_LINE}  \n`, want: undefined },
    { name: 'does not take a commented-out line for it', conf: `# ${INCLUDE_LINE}\n`, want: `# ${INCLUDE_LINE}\n\n# Added by Warden: its settings win over the lines above.\n${INCLUDE_LINE}\n` },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(withIncludeLine(c.conf), c.want);
    });
  }
});

describe('connection strings', () => {
  const valueCases: { value: string; want: string }[] = [
    { value: 'plain', want: "'plain'" },
    { value: "o'brien", want: "'o\\'brien'" },
    { value: 'back\\slash', want: "'back\\\\slash'" },
  ];
  for (const c of valueCases) {
    it(`quotes ${JSON.stringify(c.value)} for libpq`, () => {
      assert.equal(conninfoValue(c.value), c.want);
    });
  }

  it('builds primary_conninfo with the password file and the member name as application_name', () => {
    assert.equal(
      primaryConninfo({ upstream: { host: '::1', port: 6000 }, user: 'repl', passfile: '/x/p', applicationName: 'demo-3' }),
      "host='::1' port=6000 user='repl' passfile='/x/p' application_name='demo-3' connect_timeout=2",
    );
  });

  it("builds pg_rewind's source as the superuser on the postgres database", () => {
    assert.equal(rewindSourceConninfo({ host: '10.0.5.8', port: 5432 }, 'postgres'), "host='10.0.5.8' port=5432 user='postgres' dbname=postgres connect_timeout=2");
  });
});

describe('the password file', () => {
  it('lists the replication user before the superuser, for any host, port and database', () => {
    assert.equal(renderPgpass({ username: 'replicator', password: 'r' }, { username: 'postgres', password: 's' }), '*:*:*:replicator:r\n*:*:*:postgres:s\n');
  });

  const fieldCases: { value: string; want: string }[] = [
    { value: 'a:b', want: 'a\\:b' },
    { value: 'a\\b', want: 'a\\\\b' },
    { value: 'plain', want: 'plain' },
  ];
  for (const c of fieldCases) {
    it(`escapes ${JSON.stringify(c.value)} in a field`, () => {
      assert.equal(pgpassField(c.value), c.want);
    });
  }
});

describe('pg_hba.conf', () => {
  const networkCases: { host: string; want: string[] }[] = [
    { host: '10.0.5.7', want: ['127.0.0.0/8', '::1/128', '10.0.5.0/24'] },
    { host: '127.0.0.1', want: ['127.0.0.0/8', '::1/128'] },
    { host: '0.0.0.0', want: ['127.0.0.0/8', '::1/128'] },
    { host: 'fd00::5', want: ['127.0.0.0/8', '::1/128', 'fd00::5/64'] },
    { host: '::', want: ['127.0.0.0/8', '::1/128'] },
    { host: '::1', want: ['127.0.0.0/8', '::1/128'] },
    { host: 'db.example', want: ['127.0.0.0/8', '::1/128'] },
  ];
  for (const c of networkCases) {
    it(`admits loopback${c.want.length > 2 ? ` and ${c.want[2] ?? ''}` : ' only'} for a server listening on ${c.host}`, () => {
      assert.deepEqual(hbaNetworks(c.host), c.want);
    });
  }

  it('lets the superuser in by peer locally and everyone by scram-sha-256 from the networks, replication only for the replication user', () => {
    const { text, loopbackOnlyByName } = renderHba({ superuser: 'postgres', replication: 'replicator', listenHost: '10.0.5.7' });
    assert.equal(loopbackOnlyByName, false);
    assert.deepEqual(text.trimEnd().split('\n').slice(2), [
      'local   all          postgres  peer',
      'local   replication  postgres  peer',
      'host    all          all  127.0.0.0/8  scram-sha-256',
      'host    replication  replicator  127.0.0.0/8  scram-sha-256',
      'host    all          all  ::1/128  scram-sha-256',
      'host    replication  replicator  ::1/128  scram-sha-256',
      'host    all          all  10.0.5.0/24  scram-sha-256',
      'host    replication  replicator  10.0.5.0/24  scram-sha-256',
    ]);
  });

  it('trusts the superuser on the socket only for a private postmaster that asks for it (TCP stays scram-sha-256)', () => {
    const lines = renderHba({ superuser: 'postgres', replication: 'replicator', listenHost: '127.0.0.1', socketMethod: 'trust' }).text.trimEnd().split('\n').slice(2);
    assert.deepEqual(lines.slice(0, 2), ['local   all          postgres  trust', 'local   replication  postgres  trust']);
    assert.ok(lines.slice(2).every((l) => l.endsWith('scram-sha-256')));
  });

  const warningCases: { host: string; warns: boolean }[] = [
    { host: 'db.example', warns: true },
    { host: '0.0.0.0', warns: true },
    { host: '::', warns: true },
    { host: 'localhost', warns: false },
    { host: '127.0.0.1', warns: false },
    { host: '10.0.5.7', warns: false },
  ];
  for (const c of warningCases) {
    it(`${c.warns ? 'says' : 'does not say'} that only loopback is admitted for listen host ${c.host}`, () => {
      assert.equal(renderHba({ superuser: 'postgres', replication: 'replicator', listenHost: c.host }).loopbackOnlyByName, c.warns);
    });
  }
});
