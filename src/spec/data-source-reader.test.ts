import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSpecError, parseClusterSpec } from './index.js';

const spec = (dataSource: string, kind = 'PostgresCluster'): string => `apiVersion: warden.dev/v1
kind: ${kind}
metadata:
  name: clone
spec:
  instances: [{ name: instance1, replicas: 2 }]
  dataSource:
${dataSource}`;

function errorsOf(text: string): string[] {
  const r = parseClusterSpec(text, 'clone.yaml');
  return r.ok ? [] : r.errors.map(formatSpecError);
}

describe('spec.dataSource', () => {
  it('reads postgresCluster with a time target into the source, repository and target', () => {
    const r = parseClusterSpec(spec(`    postgresCluster:
      clusterName: demo
      repoName: repo1
      options: ["--type=time", "--target=2026-12-02 10:00:00+00", --target-exclusive]
`), 'clone.yaml');
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
    const ds = r.spec.dataSource;
    assert.ok(ds?.kind === 'cluster');
    assert.equal(ds.clusterName, 'demo');
    assert.equal(ds?.repoName, 'repo1');
    assert.deepEqual(ds?.target, { kind: 'time', time: '2026-12-02 10:00:00+00', exclusive: true });
    assert.deepEqual([ds.clusterNameSite.line, ds.clusterNameSite.col, ds.clusterNameSite.field], [9, 7, 'spec.dataSource.postgresCluster.clusterName']);
    assert.ok(!r.notices.some((n) => n.field.startsWith('spec.dataSource')), 'no longer a not-applied notice');
  });

  it('accepts ivoryCluster, no options (the end of the archive), --set and --target-timeline', () => {
    const r = parseClusterSpec(spec(`    ivoryCluster: { clusterName: demo, repoName: repo2, options: [--set=20261202-100000F, --target-timeline=3] }
`, 'IvoryCluster'), 'clone.yaml');
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
    assert.deepEqual(r.spec.dataSource?.target, { kind: 'latest' });
    assert.equal(r.spec.dataSource?.setLabel, '20261202-100000F');
    assert.equal(r.spec.dataSource?.targetTimeline, 3);
  });

  it('refuses --target-action (Warden promotes), unknown options and bad targets, each at its list item', () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ['[--type=time, "--target=2026-12-02 10:00:00+00", --target-action=pause]', /^clone\.yaml:11:65: spec\.dataSource\.postgresCluster\.options\[2\]: --target-action is set by Warden/],
      ['[--delta]', /options\[0\]: --delta: not accepted here; only --type, --target/],
      ['[--repo1-path=/elsewhere]', /--repo1-path: not accepted here/],
      ['[--type=immediate]', /options\[0\]: --type=immediate: must be one of time, lsn, xid, name, default/],
      ['[--type=time, --target=yesterday]', /options\[1\]: --target "yesterday": not an instant with a time zone/],
      ['[--type=lsn]', /--type=lsn needs --target/],
      ['[--target=0/1]', /--target needs --type=time, lsn, xid or name/],
      ['[--type=xid, --target=5, --type=lsn]', /--type is given twice/],
      ['[--target-timeline=latest]', /--target-timeline=latest: must be a timeline number/],
      ['[type=time]', /not a pgBackRest option/],
    ];
    for (const [options, re] of cases) {
      const errors = errorsOf(spec(`    postgresCluster:\n      clusterName: demo\n      repoName: repo1\n      options: ${options}\n`));
      assert.ok(errors.some((e) => re.test(e)), `${options}: ${errors.join('\n')}`);
    }
  });

  it('requires clusterName and a repoName of repo1 … repo4', () => {
    assert.match(errorsOf(spec('    postgresCluster: { repoName: repo1 }\n')).join('\n'), /spec\.dataSource\.postgresCluster\.clusterName: required/);
    assert.match(errorsOf(spec('    postgresCluster: { clusterName: demo, repoName: repo9 }\n')).join('\n'), /clone\.yaml:8:\d+: spec\.dataSource\.postgresCluster\.repoName: must be repo1, repo2, repo3 or repo4/);
    assert.match(errorsOf(spec('    postgresCluster: { clusterName: demo, repoName: repo1 }\n    ivoryCluster: { clusterName: demo, repoName: repo1 }\n')).join('\n'), /give one source/);
  });

  it("reads Crunchy's pgbackrest source: stanza, the repository's path from global, its other options, the target", () => {
    const r = parseClusterSpec(spec(`    pgbackrest:
      stanza: db
      configuration: [{ secret: { name: pgo-creds } }]
      global:
        repo1-path: /var/lib/pgbackrest
        repo1-cipher-type: aes-256-cbc
        repo1-cipher-pass: "s3cr3t"
        compress-level: 3
      repo:
        name: repo1
        volume: { volumeClaimSpec: {} }
      options: ["--type=lsn", "--target=0/3000000"]
`), 'clone.yaml');
    assert.ok(r.ok, r.ok ? '' : r.errors.map(formatSpecError).join('\n'));
    const ds = r.spec.dataSource;
    assert.ok(ds?.kind === 'repository');
    assert.equal(ds.stanza, 'db');
    assert.equal(ds.repoName, 'repo1');
    assert.equal(ds.repoPath, '/var/lib/pgbackrest');
    assert.deepEqual(ds.options, { 'repo1-cipher-type': 'aes-256-cbc', 'repo1-cipher-pass': 's3cr3t', 'compress-level': '3' });
    assert.deepEqual(ds.target, { kind: 'lsn', lsn: '0/3000000', exclusive: false });
    assert.deepEqual([ds.stanzaSite.line, ds.stanzaSite.field], [9, 'spec.dataSource.pgbackrest.stanza']);
    assert.ok(r.notices.some((n) => n.field === 'spec.dataSource.pgbackrest.configuration'), 'configuration is a not-applied notice');
  });

  it('refuses a pgbackrest source without its repository path, with a relative one, a cloud repository, another repository\'s or Warden\'s options', () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ['{ stanza: db, repo: { name: repo1 } }', /spec\.dataSource\.pgbackrest\.global\.repo1-path: required: where repository repo1 is/],
      ['{ stanza: db, global: { repo1-path: backups }, repo: { name: repo1 } }', /spec\.dataSource\.pgbackrest\.global\.repo1-path: must be an absolute path/],
      ['{ stanza: db, global: { repo1-path: /r }, repo: { name: repo1, s3: { bucket: b } } }', /spec\.dataSource\.pgbackrest\.repo\.s3: not supported here: only a posix repository/],
      ['{ stanza: db, global: { repo1-path: /r, repo2-path: /q }, repo: { name: repo1 } }', /global\.repo2-path: an option of another repository than repo1/],
      ['{ stanza: db, global: { repo1-path: /r, lock-path: /tmp }, repo: { name: repo1 } }', /global\.lock-path: Warden sets this option itself/],
      ['{ stanza: Db_1, global: { repo1-path: /r }, repo: { name: repo1 } }', /spec\.dataSource\.pgbackrest\.stanza: not a stanza name/],
      ['{ global: { repo1-path: /r }, repo: { name: repo1 } }', /spec\.dataSource\.pgbackrest\.stanza: required/],
      ['{ stanza: db, global: { repo1-path: /r } }', /spec\.dataSource\.pgbackrest\.repo: required/],
      ['{ stanza: db, global: { repo1-path: /r }, repo: { name: repo1 }, options: [--target-action=promote] }', /--target-action is set by Warden/],
    ];
    for (const [source, re] of cases) {
      const errors = errorsOf(spec(`    pgbackrest: ${source}\n`));
      assert.ok(errors.some((e) => re.test(e)), `${source}: ${errors.join('\n')}`);
    }
    assert.match(errorsOf(spec('    pgbackrest: { stanza: db, global: { repo1-path: /r }, repo: { name: repo1 } }\n    postgresCluster: { clusterName: demo, repoName: repo1 }\n')).join('\n'), /give one source/);
  });
});
