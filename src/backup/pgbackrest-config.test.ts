import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archiveCommand, describeRepo, isWardenOwnedOption, renderPgBackRestConf, repoConf, restoreCommand, type PgBackRestConfInput } from './pgbackrest-config.js';

const REPOSITORY: PgBackRestConfInput = {
  stanza: 'demo',
  repos: [{ name: 'repo1', path: '/var/tmp/w/backup/repo1' }],
  globalOptions: {},
  lockPath: '/var/tmp/w/backup/lock',
  logPath: '/var/tmp/w/backup/log',
};

const MEMBER: PgBackRestConfInput = {
  ...REPOSITORY,
  lockPath: '/var/tmp/w/members/demo-2/pgbackrest/lock',
  logPath: '/var/tmp/w/members/demo-2/pgbackrest/log',
  member: { spoolPath: '/var/tmp/w/members/demo-2/pgbackrest/spool', server: { dataDir: '/var/tmp/w/members/demo-2/data', port: 40123, socketDir: '/var/tmp/w/members/demo-2/run' } },
};

describe('pgbackrest.conf', () => {
  it('gives a cloud repository its type, bucket options and a prefix of its cluster inside the bucket, beside a posix one', () => {
    const s3 = repoConf('demo', { name: 'repo2', cloud: { type: 's3', bucket: 'bk', endpoint: '127.0.0.1', region: 'us-east-1' } }, '/unused');
    const azure = repoConf('demo', { name: 'repo3', cloud: { type: 'azure', container: 'ct' } }, '/unused');
    const { text, ignored } = renderPgBackRestConf({ ...REPOSITORY, repos: [...REPOSITORY.repos, s3, azure], globalOptions: { 'repo2-s3-key': 'K', 'repo2-type': 'posix' } });
    assert.deepEqual(ignored, ['repo2-type']);
    const lines = text.split('\n');
    for (const l of ['repo1-path=/var/tmp/w/backup/repo1', 'repo2-path=/warden/demo/repo2', 'repo2-type=s3', 'repo2-s3-bucket=bk', 'repo2-s3-endpoint=127.0.0.1', 'repo2-s3-region=us-east-1', 'repo2-s3-key=K', 'repo3-type=azure', 'repo3-azure-container=ct', 'repo3-path=/warden/demo/repo3']) {
      assert.ok(lines.includes(l), `${l} in\n${text}`);
    }
    assert.ok(!lines.some((l) => l.startsWith('repo1-type')), text);
    assert.equal(describeRepo(s3), 's3://bk/warden/demo/repo2 (127.0.0.1)');
    assert.equal(describeRepo(azure), 'azure://ct/warden/demo/repo3');
    assert.equal(describeRepo(REPOSITORY.repos[0] ?? assert.fail()), '/var/tmp/w/backup/repo1');
  });

  it('gives the repository its path, lock and log paths and Warden defaults, and no servers', () => {
    const { text, ignored } = renderPgBackRestConf(REPOSITORY);
    assert.deepEqual(ignored, []);
    assert.equal(
      text,
      [
        '# Written by Warden; edits are overwritten. Set options in spec.backups.pgbackrest.global.',
        '[global]',
        'lock-path=/var/tmp/w/backup/lock',
        'log-level-console=warn',
        'log-level-file=info',
        'log-level-stderr=error',
        'log-path=/var/tmp/w/backup/log',
        'repo1-path=/var/tmp/w/backup/repo1',
        'repo1-retention-full=2',
        'start-fast=y',
        '',
      ].join('\n'),
    );
  });

  it('gives a member its own lock, log and spool paths, its server as pg1, and asynchronous push only', () => {
    const { text } = renderPgBackRestConf(MEMBER);
    assert.match(text, /^lock-path=\/var\/tmp\/w\/members\/demo-2\/pgbackrest\/lock$/m);
    assert.match(text, /^log-path=\/var\/tmp\/w\/members\/demo-2\/pgbackrest\/log$/m);
    assert.match(text, /^spool-path=\/var\/tmp\/w\/members\/demo-2\/pgbackrest\/spool$/m);
    // archive-get stays synchronous: asynchronous archive-get has a timeline race in pgBackRest 2.45.
    assert.match(text, /\n\[global:archive-push\]\narchive-async=y\n/);
    assert.doesNotMatch(text, /\[global:archive-get\]/);
    assert.match(text, /\n\[demo\]\npg1-path=\/var\/tmp\/w\/members\/demo-2\/data\npg1-port=40123\npg1-socket-path=\/var\/tmp\/w\/members\/demo-2\/run\n$/);
  });

  it('passes the spec\'s global options through and lets them override Warden\'s defaults', () => {
    const { text, ignored } = renderPgBackRestConf({ ...REPOSITORY, globalOptions: { 'repo1-retention-full': '7', 'compress-type': 'lz4' } });
    assert.deepEqual(ignored, []);
    assert.match(text, /^repo1-retention-full=7$/m);
    assert.match(text, /^compress-type=lz4$/m);
  });

  const owned: ReadonlyArray<readonly [string, string]> = [
    ['keeps the repository where the runtime placed it', 'repo1-path'],
    ['keeps the servers Warden names', 'pg1-path'],
    ['keeps each member\'s own lock path', 'lock-path'],
    ['keeps each member\'s own spool path', 'spool-path'],
    ['keeps archive-get synchronous', 'archive-async'],
  ];
  for (const [name, option] of owned) {
    it(`${name} (${option} from the spec is left out and reported)`, () => {
      assert.equal(isWardenOwnedOption(option), true);
      const { text, ignored } = renderPgBackRestConf({ ...REPOSITORY, globalOptions: { [option]: '/elsewhere' } });
      assert.deepEqual(ignored, [option]);
      assert.doesNotMatch(text, /=\/elsewhere$/m);
    });
  }

  it('keeps a value with a line break on one line, so it cannot add an option', () => {
    const { text } = renderPgBackRestConf({ ...REPOSITORY, globalOptions: { 'repo1-s3-uri-style': 'b\nrepo1-path=/tmp/x' } });
    assert.match(text, /^repo1-s3-uri-style=b repo1-path=\/tmp\/x$/m);
    assert.match(text, /^repo1-path=\/var\/tmp\/w\/backup\/repo1$/m);
  });
});

describe('archive and restore commands', () => {
  const cases: ReadonlyArray<readonly [string, () => string, string]> = [
    ['pushes %p through the member\'s config file', () => archiveCommand('/var/tmp/w/members/demo-1/pgbackrest.conf', 'demo'), `pgbackrest '--config=/var/tmp/w/members/demo-1/pgbackrest.conf' '--stanza=demo' archive-push "%p"`],
    ['fetches %f into %p through the member\'s config file', () => restoreCommand('/var/tmp/w/members/demo-1/pgbackrest.conf', 'demo'), `pgbackrest '--config=/var/tmp/w/members/demo-1/pgbackrest.conf' '--stanza=demo' archive-get %f "%p"`],
    ['quotes a path with a quote for the shell', () => archiveCommand("/var/tmp/it's/pgbackrest.conf", 'demo'), `pgbackrest '--config=/var/tmp/it'\\''s/pgbackrest.conf' '--stanza=demo' archive-push "%p"`],
    ['doubles a % in a path so PostgreSQL does not read it as a placeholder', () => restoreCommand('/var/tmp/100%p/pgbackrest.conf', 'demo'), `pgbackrest '--config=/var/tmp/100%%p/pgbackrest.conf' '--stanza=demo' archive-get %f "%p"`],
  ];
  for (const [name, make, expected] of cases) {
    it(name, () => assert.equal(make(), expected));
  }
});
