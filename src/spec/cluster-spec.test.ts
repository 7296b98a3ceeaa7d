import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_DYNAMIC_CONFIG } from '../ha/dynamic-config.js';
import { defaultClusterSpec, formatSpecError, loadClusterSpec, noticesForController, parseClusterSpec } from './index.js';
import type { ClusterSpec, SpecError } from './index.js';

/** Parses and fails the test with the formatted errors when the spec is rejected. */
function accept(text: string, file = 'cluster.yaml'): { spec: ClusterSpec; notices: string[] } {
  const r = parseClusterSpec(text, file);
  if (!r.ok) assert.fail(`expected the spec to parse, got:\n${r.errors.map(formatSpecError).join('\n')}`);
  return { spec: r.spec, notices: r.notices.map(formatSpecError) };
}

function reject(text: string, file = 'cluster.yaml'): readonly SpecError[] {
  const r = parseClusterSpec(text, file);
  if (r.ok) assert.fail(`expected errors, the spec parsed: ${JSON.stringify(r.spec)}`);
  return r.errors;
}

const header = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: demo
`;

const CRUNCHY = `apiVersion: postgres-operator.crunchydata.com/v1beta1
kind: PostgresCluster
metadata:
  name: hippo
  namespace: postgres-operator
spec:
  image: registry.developers.crunchydata.com/crunchydata/crunchy-postgres:ubi8-15.6-0
  postgresVersion: 15
  instances:
    - name: pgha1
      replicas: 2
      dataVolumeClaimSpec:
        accessModes:
          - "ReadWriteOnce"
        resources:
          requests:
            storage: 1Gi
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 1
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    postgres-operator.crunchydata.com/cluster: hippo
                    postgres-operator.crunchydata.com/instance-set: pgha1
    - name: pgha2
      replicas: 1
      minAvailable: 1
      dataVolumeClaimSpec:
        accessModes: ["ReadWriteOnce"]
        resources: { requests: { storage: 1Gi } }
  backups:
    pgbackrest:
      image: registry.developers.crunchydata.com/crunchydata/crunchy-pgbackrest:ubi8-2.49-0
      repos:
        - name: repo1
          volume:
            volumeClaimSpec:
              accessModes:
                - "ReadWriteOnce"
              resources:
                requests:
                  storage: 1Gi
  patroni:
    dynamicConfiguration:
      synchronous_mode: true
      postgresql:
        parameters:
          max_connections: 200
          shared_buffers: 256MB
          log_min_duration_statement: 1000
          port: 5433
        pg_hba:
          - "host all all 0.0.0.0/0 scram-sha-256"
`;

const IVORY = `apiVersion: ivory-operator.ivorysql.org/v1beta1
kind: IvoryCluster
metadata:
  name: hippo
spec:
  image: docker.io/ivorysql/ivorysql:ubi8-2.3-1.0
  postgresVersion: 15
  instances:
    - name: instance1
      replicas: 3
      dataVolumeClaimSpec:
        accessModes:
        - "ReadWriteOnce"
        resources:
          requests:
            storage: 1Gi
  patroni:
    leaderLeaseDurationSeconds: 4
    syncPeriodSeconds: 1
  backups:
    pgbackrest:
      repos:
      - name: repo1
`;

describe('cluster spec: spec.backups.pgbackrest', () => {
  const backups = (body: string): string => `${header}spec:\n  instances: [{ replicas: 2 }]\n  backups:\n    pgbackrest:\n${body}`;

  it('reads volume repositories and passes global options through as text', () => {
    const { spec, notices } = accept(backups('      global: { repo1-retention-full: 7, compress-type: lz4, archive-check: false }\n      repos:\n        - name: repo1\n          volume: {}\n'));
    assert.deepEqual(spec.backups, { repos: [{ name: 'repo1', schedules: [] }], global: { 'repo1-retention-full': '7', 'compress-type': 'lz4', 'archive-check': 'n' } });
    assert.deepEqual(notices, ['cluster.yaml:12:11: spec.backups.pgbackrest.repos[0].volume: the local runtime keeps this repository in DIR/backup/<name>; the volume claim is not applied']);
  });

  it('reads schedules (full, differential, incremental: 5-field cron) and notes manual as not applied', () => {
    const { spec, notices } = accept(backups('      manual: { repoName: repo1 }\n      repos:\n        - name: repo1\n          schedules: { full: "0 1 * * 0", differential: 0 1 * * 1-6, incremental: "*/15 * * * *" }\n'));
    assert.deepEqual(spec.backups?.repos[0]?.schedules, [
      { type: 'full', cron: '0 1 * * 0' },
      { type: 'diff', cron: '0 1 * * 1-6' },
      { type: 'incr', cron: '*/15 * * * *' },
    ]);
    assert.deepEqual(notices, ['cluster.yaml:9:7: spec.backups.pgbackrest.manual: not applied in the local runtime']);
  });

  it('refuses a malformed cron at the line and column of the bad field', () => {
    const errors = reject(backups('      repos:\n        - name: repo1\n          schedules:\n            full: "0 25 * * *"\n            incremental: 61 * * * *\n            differential: "* * *"\n'));
    assert.deepEqual(errors.map((e) => `${e.line}:${e.col}: ${e.field}: ${e.message}`), [
      '12:22: spec.backups.pgbackrest.repos[0].schedules.full: hour "25": must be within 0-23',
      '13:26: spec.backups.pgbackrest.repos[0].schedules.incremental: minute "61": must be within 0-59',
      '14:28: spec.backups.pgbackrest.repos[0].schedules.differential: a cron schedule has 5 fields (minute hour day-of-month month day-of-week), got 3: "* * *"',
    ]);
  });

  it('reads s3, gcs and azure repositories (the operators\' shape) with their credentials in global', () => {
    const { spec, notices } = accept(
      backups(
        '      global: { repo1-s3-key: K, repo1-s3-key-secret: S, repo1-s3-uri-style: path, repo2-gcs-key-type: auto, repo3-azure-account: a, repo3-azure-key: k }\n' +
          '      repos:\n        - name: repo1\n          s3: { bucket: b, endpoint: s3.example.com, region: eu-west-1 }\n' +
          '        - name: repo2\n          gcs: { bucket: g }\n        - name: repo3\n          azure: { container: c }\n',
      ),
    );
    assert.deepEqual(spec.backups?.repos, [
      { name: 'repo1', cloud: { type: 's3', bucket: 'b', endpoint: 's3.example.com', region: 'eu-west-1' }, schedules: [] },
      { name: 'repo2', cloud: { type: 'gcs', bucket: 'g' }, schedules: [] },
      { name: 'repo3', cloud: { type: 'azure', container: 'c' }, schedules: [] },
    ]);
    assert.deepEqual(notices, []);
  });

  it('refuses a cloud repository without its credentials or its required fields, and one that is also a volume', () => {
    const errors = reject(
      backups(
        '      global: { repo2-s3-key: K }\n      repos:\n        - name: repo1\n          s3: { bucket: b, region: r }\n' +
          '        - name: repo2\n          s3: { bucket: b, endpoint: e, region: r }\n        - name: repo3\n          volume: {}\n          gcs: { bucket: g }\n',
      ),
    ).map((e) => `${e.line}:${e.col}: ${e.field}: ${e.message}`);
    assert.deepEqual(errors, [
      '12:11: spec.backups.pgbackrest.repos[0].s3.endpoint: required for this s3 repository',
      '14:11: spec.backups.pgbackrest.repos[1].s3: needs its credentials in spec.backups.pgbackrest.global: repo2-s3-key and repo2-s3-key-secret, or repo2-s3-key-type: auto, or repo2-s3-key-type: web-id',
      '17:11: spec.backups.pgbackrest.repos[2].gcs: a repository is one of volume, s3, gcs or azure: give each its own repoN',
    ]);
  });

  const bad: ReadonlyArray<readonly [string, string, string]> = [
    ['refuses a repository name pgBackRest would not know', '      repos: [{ name: backups, volume: {} }]\n', 'spec.backups.pgbackrest.repos[0].name: must be repo1, repo2, repo3 or repo4 (got "backups"): pgBackRest numbers its repositories'],
    ['refuses an option Warden sets itself', '      global: { repo1-path: /tmp/x }\n      repos: [{ name: repo1 }]\n', 'spec.backups.pgbackrest.global.repo1-path: Warden sets this option itself (repository paths, servers, lock, log and spool paths, asynchronous archiving)'],
    ['refuses a repository\'s type or bucket in global (they come from its s3 / gcs / azure section)', '      global: { repo1-s3-bucket: b }\n      repos: [{ name: repo1 }]\n', 'spec.backups.pgbackrest.global.repo1-s3-bucket: Warden sets this option itself (repository paths, servers, lock, log and spool paths, asynchronous archiving)'],
    ['refuses an option name that is not pgBackRest\'s shape', '      global: { Repo1_Retention: 2 }\n      repos: [{ name: repo1 }]\n', 'spec.backups.pgbackrest.global.Repo1_Retention: not a pgBackRest option name (lowercase words joined by -, e.g. repo1-retention-full)'],
    ['refuses a pgbackrest section without repositories', '      global: {}\n', 'spec.backups.pgbackrest.repos: required: at least one repository, e.g. "repos: [{ name: repo1, volume: {} }]"'],
    ['refuses the same repository twice', '      repos: [{ name: repo1 }, { name: repo1 }]\n', 'spec.backups.pgbackrest.repos[1].name: repository repo1 is listed twice'],
  ];
  for (const [name, body, message] of bad) {
    it(name, () => {
      const errors = reject(backups(body)).map((e) => `${e.field}: ${e.message}`);
      assert.ok(errors.includes(message), errors.join('\n'));
    });
  }
});

describe('cluster spec: accepted files', () => {
  it('the default spec is cluster demo with members demo-1..3 and default timings', () => {
    const spec = defaultClusterSpec();
    assert.deepEqual(spec, {
      name: 'demo',
      apiVersion: 'warden.dev/v1',
      kind: 'Cluster',
      members: [
        { name: 'demo-1', instanceSet: 'instance1' },
        { name: 'demo-2', instanceSet: 'instance1' },
        { name: 'demo-3', instanceSet: 'instance1' },
      ],
      dynamicConfig: DEFAULT_DYNAMIC_CONFIG,
      etcdMembers: 3,
      restartDelaySeconds: 5,
      namespace: 'default',
      disableDefaultPodScheduling: false,
      instanceSets: [{ name: 'instance1', labels: {}, tolerations: [], topologySpreadConstraints: [] }],
    });
  });

  it('a minimal Warden Cluster file gives the default spec with no notices', () => {
    const { spec, notices } = accept(`${header}spec:\n  instances:\n    - replicas: 3\n`);
    assert.deepEqual(spec, defaultClusterSpec());
    assert.deepEqual(notices, []);
  });

  it('where the controller runs the spec, the notices about placement and router replicas are dropped (it applies them); the others stay', () => {
    const r = parseClusterSpec(CRUNCHY.replace('  instances:\n', '  proxy:\n    router:\n      replicas: 2\n  instances:\n'), 'cluster.yaml');
    if (!r.ok) assert.fail(r.errors.map(formatSpecError).join('\n'));
    const all = r.notices.map((n) => n.field);
    assert.ok(all.includes('spec.proxy.router.replicas') && all.includes('spec.instances[0].affinity'), all.join(', '));
    const kept = noticesForController(r.notices).map((n) => n.field);
    assert.ok(!kept.includes('spec.proxy.router.replicas') && !kept.includes('spec.instances[0].affinity') && !kept.includes('metadata.namespace'), kept.join(', '));
    assert.ok(kept.includes('spec.image') && kept.includes('spec.instances[0].dataVolumeClaimSpec'), kept.join(', '));
  });

  it('a Crunchy PostgresCluster parses, with notices for the Kubernetes-only fields', () => {
    const { spec, notices } = accept(CRUNCHY);
    assert.equal(spec.kind, 'PostgresCluster');
    assert.equal(spec.apiVersion, 'postgres-operator.crunchydata.com/v1beta1');
    assert.deepEqual(spec.members, [
      { name: 'hippo-pgha1-1', instanceSet: 'pgha1' },
      { name: 'hippo-pgha1-2', instanceSet: 'pgha1' },
      { name: 'hippo-pgha2-1', instanceSet: 'pgha2' },
    ]);
    assert.equal(spec.dynamicConfig.synchronous_mode, 'on');
    assert.deepEqual(spec.dynamicConfig.postgresql.parameters, { max_connections: 200, shared_buffers: '256MB', log_min_duration_statement: 1000 });
    assert.equal(spec.dynamicConfig.ttl, DEFAULT_DYNAMIC_CONFIG.ttl);
    assert.deepEqual(notices, [
      'cluster.yaml:5:3: metadata.namespace: used by `warden plan` for placement; not applied in the local runtime',
      'cluster.yaml:7:3: spec.image: not applied in the local runtime',
      'cluster.yaml:12:7: spec.instances[0].dataVolumeClaimSpec: not applied in the local runtime',
      'cluster.yaml:18:7: spec.instances[0].affinity: used by `warden plan` for placement; not applied in the local runtime',
      'cluster.yaml:30:7: spec.instances[1].minAvailable: not applied in the local runtime',
      'cluster.yaml:31:7: spec.instances[1].dataVolumeClaimSpec: not applied in the local runtime',
      'cluster.yaml:36:7: spec.backups.pgbackrest.image: not applied in the local runtime',
      'cluster.yaml:39:11: spec.backups.pgbackrest.repos[0].volume: the local runtime keeps this repository in DIR/backup/<name>; the volume claim is not applied',
      'cluster.yaml:54:11: spec.patroni.dynamicConfiguration.postgresql.parameters.port: set by Warden for each member; this value is ignored',
      'cluster.yaml:55:9: spec.patroni.dynamicConfiguration.postgresql.pg_hba: known Patroni setting, not implemented by Warden yet; ignored (pg_hba.conf is written by Warden)',
    ]);
  });

  it('an IvoryCluster parses, and Crunchy-style lease settings become ttl and loop_wait', () => {
    const { spec, notices } = accept(IVORY, 'ivory.yaml');
    assert.equal(spec.kind, 'IvoryCluster');
    assert.deepEqual(
      spec.members.map((m) => m.name),
      ['hippo-1', 'hippo-2', 'hippo-3'],
    );
    assert.equal(spec.dynamicConfig.ttl, 4);
    assert.equal(spec.dynamicConfig.loop_wait, 1);
    assert.deepEqual(notices, [
      'ivory.yaml:6:3: spec.image: not applied in the local runtime',
      'ivory.yaml:11:7: spec.instances[0].dataVolumeClaimSpec: not applied in the local runtime',
    ]);
    assert.deepEqual(spec.backups, { repos: [{ name: 'repo1', schedules: [] }], global: {} });
  });

  it('several instance sets name members <cluster>-<set>-N, and unnamed sets are instance<N>', () => {
    const { spec } = accept(`${header}spec:\n  instances:\n    - replicas: 2\n    - name: west\n`);
    assert.deepEqual(spec.members, [
      { name: 'demo-instance1-1', instanceSet: 'instance1' },
      { name: 'demo-instance1-2', instanceSet: 'instance1' },
      { name: 'demo-west-1', instanceSet: 'west' },
    ]);
  });

  it('Patroni keys and values are merged onto the defaults, and paused turns on maintenance mode', () => {
    const { spec, notices } = accept(`${header}spec:
  instances: [{ replicas: 3 }]
  paused: true
  patroni:
    dynamicConfiguration:
      ttl: 30
      loop_wait: 10
      retry_timeout: 10
      maximum_lag_on_failover: 33554432
      primary_start_timeout: 0
      synchronous_mode: quorum
      synchronous_mode_strict: true
      synchronous_node_count: 2
      check_timeline: false
      failsafe_mode: true
      standby_cluster: { host: 10.0.0.1 }
      postgresql:
        use_pg_rewind: false
        parameters: { wal_level: logical, "auto_explain.log_min_duration": "5s" }
  warden:
    etcd: { members: 5 }
    restartDelaySeconds: 0.5
`);
    assert.deepEqual(spec.dynamicConfig, {
      ttl: 30,
      loop_wait: 10,
      retry_timeout: 10,
      maximum_lag_on_failover: 33554432,
      primary_start_timeout: 0,
      replica_start_timeout: 300,
      synchronous_mode: 'quorum',
      synchronous_mode_strict: true,
      synchronous_node_count: 2,
      check_timeline: false,
      failsafe_mode: true,
      pause: true,
      postgresql: { use_pg_rewind: false, parameters: { wal_level: 'logical', 'auto_explain.log_min_duration': '5s' } },
    });
    assert.equal(spec.etcdMembers, 5);
    assert.equal(spec.restartDelaySeconds, 0.5);
    assert.deepEqual(notices, [
      'cluster.yaml:20:7: spec.patroni.dynamicConfiguration.standby_cluster: standby clusters are not implemented by Warden yet; ignored (the cluster bootstraps its own primary)',
    ]);
  });

  it('synchronous_mode accepts false, true, off, on and quorum', () => {
    const cases = [
      ['false', 'off'],
      ['true', 'on'],
      ['off', 'off'],
      ['on', 'on'],
      ["'on'", 'on'],
      ['quorum', 'quorum'],
    ] as const;
    for (const [text, mode] of cases) {
      const { spec } = accept(`${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      synchronous_mode: ${text}\n`);
      assert.equal(spec.dynamicConfig.synchronous_mode, mode, text);
    }
  });

  it('a synchronous node count the cluster cannot honour is accepted with a notice', () => {
    const { notices } = accept(`${header}spec:\n  instances: [{ replicas: 2 }]\n  patroni:\n    dynamicConfiguration:\n      synchronous_mode: on\n      synchronous_node_count: 2\n`);
    assert.deepEqual(notices, [
      'cluster.yaml:10:7: spec.patroni.dynamicConfiguration.synchronous_node_count: synchronous_node_count is 2 but the cluster has 1 replica(s); at most 1 can be synchronous',
    ]);
  });
});

/** Each case: the file, and the one error expected as file:line:col: field plus a message fragment. */
const errorCases: { name: string; text: string; at: string; message: RegExp }[] = [
  {
    name: 'a misspelt ttl is an error that suggests ttl',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      tll: 10\n`,
    at: 'cluster.yaml:9:7: spec.patroni.dynamicConfiguration.tll',
    message: /^unknown field "tll"; did you mean "ttl"\?$/,
  },
  {
    name: 'a ttl that is not a number names the field and the value',
    text: `${header}\nspec:\n  instances:\n    - name: instance1\n      replicas: 3\n  patroni:\n    dynamicConfiguration:\n      ttl: abc\n`,
    at: 'cluster.yaml:12:7: spec.patroni.dynamicConfiguration.ttl',
    message: /^must be a number > 0 and ≤ 3600 \(got "abc"\)$/,
  },
  {
    name: 'loop_wait + 2 × retry_timeout > ttl is reported at ttl',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      loop_wait: 1\n      ttl: 2\n      retry_timeout: 1\n`,
    at: 'cluster.yaml:10:7: spec.patroni.dynamicConfiguration.ttl',
    message: /^loop_wait \+ 2 × retry_timeout must be ≤ ttl, got 1 \+ 2 × 1 = 3 > 2$/,
  },
  {
    name: 'a timing violation without ttl is reported at dynamicConfiguration and says ttl was defaulted',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      loop_wait: 5\n`,
    at: 'cluster.yaml:8:5: spec.patroni.dynamicConfiguration',
    message: /= 6\.5 > 2 \(ttl is the default 2, retry_timeout is the default 0\.75\)$/,
  },
  {
    name: 'replicas: 0 is rejected',
    text: `${header}spec:\n  instances:\n    - name: instance1\n      replicas: 0\n`,
    at: 'cluster.yaml:8:7: spec.instances[0].replicas',
    message: /^must be an integer ≥ 1 \(got 0\)$/,
  },
  {
    name: 'replicas given as a string is a type error',
    text: `${header}spec:\n  instances:\n    - replicas: "3"\n`,
    at: 'cluster.yaml:7:7: spec.instances[0].replicas',
    message: /^must be an integer ≥ 1 \(got "3"\)$/,
  },
  {
    name: 'kind Deployment lists the accepted kinds',
    text: `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n  instances: [{}]\n`,
    at: 'cluster.yaml:2:1: kind',
    message: /^must be one of Cluster, IvoryCluster, PostgresCluster \(got "Deployment"\)$/,
  },
  {
    name: 'a YAML syntax error is located at file:line:col',
    text: `${header}spec:\n  instances:\n  - replicas: 1\n  replicas 2\n`,
    at: 'cluster.yaml:8:3',
    message: /^YAML syntax error: Implicit map keys need to be followed by map values$/,
  },
  {
    name: 'a duplicate key is a YAML error at the second occurrence',
    text: `${header}spec:\n  instances: [{}]\n  instances: [{}]\n`,
    at: 'cluster.yaml:7:3',
    message: /^YAML syntax error: Map keys must be unique$/,
  },
  {
    name: 'instances given as a scalar is a type error',
    text: `${header}spec:\n  instances: three\n`,
    at: 'cluster.yaml:6:3: spec.instances',
    message: /^must be a list \(got "three"\)$/,
  },
  {
    name: 'an empty instance list is rejected',
    text: `${header}spec:\n  instances: []\n`,
    at: 'cluster.yaml:6:3: spec.instances',
    message: /^must list at least one instance set$/,
  },
  {
    name: 'a missing spec.instances is reported at spec',
    text: `${header}spec:\n  postgresVersion: 15\n`,
    at: 'cluster.yaml:5:1: spec.instances',
    message: /^required: at least one instance set/,
  },
  {
    name: 'a missing metadata.name is reported at metadata',
    text: `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  labels: { app: pg }\nspec:\n  instances: [{}]\n`,
    at: 'cluster.yaml:3:1: metadata.name',
    message: /^required: the cluster name/,
  },
  {
    name: 'a cluster name that is not a DNS label is rejected',
    text: `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: My_Cluster\nspec:\n  instances: [{}]\n`,
    at: 'cluster.yaml:4:3: metadata.name',
    message: /lowercase letters, digits and '-'.*"My_Cluster"/,
  },
  {
    name: 'a PostgreSQL version other than 15 names the field',
    text: `${header}spec:\n  postgresVersion: 16\n  instances: [{}]\n`,
    at: 'cluster.yaml:6:3: spec.postgresVersion',
    message: /^only PostgreSQL 15 is supported by the local runtime \(got 16\)$/,
  },
  {
    name: 'more than nine members is more than the local runtime runs',
    text: `${header}spec:\n  instances:\n    - replicas: 5\n    - name: b\n      replicas: 5\n`,
    at: 'cluster.yaml:6:3: spec.instances',
    message: /^the local runtime runs 1 to 9 members; these instance sets add up to 10 replicas$/,
  },
  {
    name: 'an unknown spec key suggests the known one',
    text: `${header}spec:\n  instance:\n    - replicas: 1\n  instances: [{}]\n`,
    at: 'cluster.yaml:6:3: spec.instance',
    message: /^unknown field "instance"; did you mean "instances"\?$/,
  },
  {
    name: 'an unknown instance key suggests the known one',
    text: `${header}spec:\n  instances:\n    - name: a\n      replica: 3\n`,
    at: 'cluster.yaml:8:7: spec.instances[0].replica',
    message: /^unknown field "replica"; did you mean "replicas"\?$/,
  },
  {
    name: 'a camelCase Patroni key suggests the snake_case one',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      loopWait: 1\n`,
    at: 'cluster.yaml:9:7: spec.patroni.dynamicConfiguration.loopWait',
    message: /^unknown field "loopWait"; did you mean "loop_wait"\?$/,
  },
  {
    name: 'an unknown key far from any known one lists the accepted keys',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      zzzzzz: 1\n`,
    at: 'cluster.yaml:9:7: spec.patroni.dynamicConfiguration.zzzzzz',
    message: /^unknown field "zzzzzz" \(expected one of: .*check_timeline.*ttl/,
  },
  {
    name: 'leaderLeaseDurationSeconds and ttl with different values conflict',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    leaderLeaseDurationSeconds: 10\n    dynamicConfiguration:\n      ttl: 20\n`,
    at: 'cluster.yaml:10:7: spec.patroni.dynamicConfiguration.ttl',
    message: /^conflicts with spec\.patroni\.leaderLeaseDurationSeconds \(10 there, 20 here\); set ttl in one place$/,
  },
  {
    name: 'an unknown synchronous_mode value is rejected',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      synchronous_mode: always\n`,
    at: 'cluster.yaml:9:7: spec.patroni.dynamicConfiguration.synchronous_mode',
    message: /^must be false, true, off, on or quorum \(got "always"\)$/,
  },
  {
    name: 'a parameter value that is a mapping is rejected',
    text: `${header}spec:\n  instances: [{}]\n  patroni:\n    dynamicConfiguration:\n      postgresql:\n        parameters:\n          work_mem: { a: 1 }\n`,
    at: 'cluster.yaml:11:11: spec.patroni.dynamicConfiguration.postgresql.parameters.work_mem',
    message: /^must be a string, number or boolean \(got a mapping\)$/,
  },
  {
    name: 'an even etcd member count is rejected',
    text: `${header}spec:\n  instances: [{}]\n  warden:\n    etcd:\n      members: 2\n`,
    at: 'cluster.yaml:9:7: spec.warden.etcd.members',
    message: /^must be 1, 3 or 5 \(got 2\)/,
  },
  {
    name: 'two instance sets with one name are rejected',
    text: `${header}spec:\n  instances:\n    - name: a\n    - name: a\n`,
    at: 'cluster.yaml:8:7: spec.instances[1].name',
    message: /^duplicate instance set name "a"$/,
  },
  {
    name: 'a member name that would be too long points at the cluster name',
    text: `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: ${'a'.repeat(39)}\nspec:\n  instances: [{}]\n`,
    at: 'cluster.yaml:4:3: metadata.name',
    message: /^member name "a{39}-1" is not usable: must be at most 40 characters/,
  },
  {
    name: 'a misspelt required section is one error, not a second "required" one',
    text: `apiVersion: warden.dev/v1\nkind: Cluster\nmetdata:\n  name: demo\nspec:\n  instances: [{}]\n`,
    at: 'cluster.yaml:3:1: metdata',
    message: /^unknown field "metdata"; did you mean "metadata"\?$/,
  },
  {
    name: 'a missing kind lists the accepted kinds',
    text: `apiVersion: warden.dev/v1\nmetadata:\n  name: demo\nspec:\n  instances: [{}]\n`,
    at: 'cluster.yaml:1:1: kind',
    message: /^required: one of Cluster, IvoryCluster, PostgresCluster$/,
  },
  {
    name: 'an empty file says what a spec needs',
    text: '# nothing yet\n',
    at: 'cluster.yaml:1:1',
    message: /^the file is empty/,
  },
  {
    name: 'a document that is a list is rejected',
    text: '- kind: Cluster\n',
    at: 'cluster.yaml:1:1',
    message: /^must be a mapping \(got a list\)$/,
  },
  {
    name: 'two YAML documents in one file are rejected',
    text: `${header}spec:\n  instances: [{}]\n---\nkind: Cluster\n`,
    at: 'cluster.yaml:7:1',
    message: /one YAML document/,
  },
];

describe('cluster spec: errors name file, line, column and field', () => {
  for (const c of errorCases) {
    it(c.name, () => {
      const errors = reject(c.text);
      assert.equal(errors.length, 1, errors.map(formatSpecError).join('\n'));
      const e = errors[0];
      assert.ok(e !== undefined);
      const formatted = formatSpecError(e);
      assert.ok(formatted.startsWith(`${c.at}: `), `${formatted}\n  does not start with ${c.at}`);
      assert.match(e.message, c.message);
    });
  }

  it('all problems of a file are reported at once, in file order', () => {
    const errors = reject(`apiVersion: warden.dev/v1\nkind: Deployment\nmetadata:\n  name: demo\nspec:\n  instances:\n    - replicas: 0\n  patroni:\n    dynamicConfiguration:\n      tll: 3\n`);
    assert.deepEqual(
      errors.map((e) => `${e.line}:${e.col} ${e.field}`),
      ['2:1 kind', '7:7 spec.instances[0].replicas', '10:7 spec.patroni.dynamicConfiguration.tll'],
    );
  });

  it('formats errors like a compiler: file:line:col: field: message', () => {
    assert.equal(
      formatSpecError({ file: 'cluster.yaml', line: 12, col: 7, field: 'spec.patroni.dynamicConfiguration.ttl', message: 'must be a number > 0 (got "abc")' }),
      'cluster.yaml:12:7: spec.patroni.dynamicConfiguration.ttl: must be a number > 0 (got "abc")',
    );
    assert.equal(formatSpecError({ file: 'c.yaml', line: 0, col: 0, field: '', message: 'cluster spec file not found' }), 'c.yaml: cluster spec file not found');
  });
});

describe('loadClusterSpec', () => {
  it('reads a file and reports errors under its path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-spec-'));
    try {
      const path = join(dir, 'cluster.yaml');
      await writeFile(path, `${header}spec:\n  instances: [{ replicas: 0 }]\n`);
      const r = await loadClusterSpec(path);
      assert.equal(r.ok, false);
      if (!r.ok) assert.deepEqual(r.errors.map(formatSpecError), [`${path}:6:17: spec.instances[0].replicas: must be an integer ≥ 1 (got 0)`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a missing file is one clear error naming it', async () => {
    const r = await loadClusterSpec('/nonexistent/warden/cluster.yaml');
    assert.equal(r.ok, false);
    if (!r.ok) assert.deepEqual(r.errors.map(formatSpecError), ['/nonexistent/warden/cluster.yaml: cluster spec file not found']);
  });
});

describe('spec.proxy.router', () => {
  it('reads the router replicas the controller places, and leaves them unset when absent', () => {
    const { spec, notices } = accept(`${header}spec:\n  instances: [{ replicas: 2 }]\n  proxy:\n    router:\n      replicas: 2\n    pgBouncer: {}\n`);
    assert.equal(spec.routerReplicas, 2);
    assert.ok(notices.some((n) => n.startsWith('cluster.yaml:9:7: spec.proxy.router.replicas: used by the controller')), notices.join('\n'));
    assert.ok(notices.some((n) => /spec\.proxy\.pgBouncer: not applied/.test(n)), notices.join('\n'));
    assert.equal(accept(`${header}spec:\n  instances: [{ replicas: 2 }]\n`).spec.routerReplicas, undefined);
  });

  it('rejects a negative or fractional router count with its line and column', () => {
    const errors = reject(`${header}spec:\n  instances: [{ replicas: 2 }]\n  proxy:\n    router:\n      replicas: -1\n`);
    assert.match(formatSpecError(errors[0] as SpecError), /^cluster\.yaml:9:7: spec\.proxy\.router\.replicas: must be an integer/);
  });
});
