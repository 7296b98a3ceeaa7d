import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pgBackRestErrorOf, pgBackRestFailure } from './pgbackrest-errors.js';
import { targetFlags } from './pgbackrest-repository.js';

describe('pgBackRest errors', () => {
  const cases: ReadonlyArray<readonly [string, string, string, boolean, RegExp]> = [
    ['a held lock is a retryable conflict', 'ERROR: [050]: unable to acquire lock on file \'/x/demo-backup.lock\': Resource temporarily unavailable\n       HINT: is another pgBackRest process running?', 'conflict', true, /unable to acquire lock .* HINT: is another pgBackRest process running\? \[pgBackRest error 50\]/],
    ['no set before the target is not-found', "ERROR: [075]: unable to find backup set with stop time less than '2020-01-01 00:00:00+00'", 'not-found', false, /unable to find backup set/],
    ['a repository of another system is a conflict (2.45 says so with file-invalid, 028)', 'ERROR: [028]: backup and archive info files exist but do not match the database\n       HINT: is this the correct stanza?\n       HINT: did an error occur during stanza-upgrade?', 'conflict', false, /do not match the database HINT: is this the correct stanza\? HINT: did an error occur during stanza-upgrade\? \[pgBackRest error 28\]/],
    ['a damaged info file stays a command failure', 'ERROR: [028]: invalid checksum in \'/repo/backup/t/backup.info\'', 'backup-command-failed', false, /invalid checksum/],
    ['an unreachable server is retryable', 'ERROR: [056]: unable to connect to \'dbname=\'postgres\' port=5432\'', 'postgres-unavailable', true, /unable to connect/],
    ['an unknown code keeps the message', 'P00  ERROR: [104]: archive-push command encountered error(s)', 'backup-command-failed', false, /encountered error\(s\) \[pgBackRest error 104\]/],
  ];
  for (const [name, output, code, retryable, message] of cases) {
    it(name, () => {
      const e = pgBackRestFailure('backup (stanza demo)', { code: 1, signal: null }, output);
      assert.equal(e.code, code);
      assert.equal(e.retryable, retryable);
      assert.match(e.message, message);
    });
  }

  it('keeps the last lines of output when pgBackRest printed no error line', () => {
    const e = pgBackRestFailure('info (stanza demo)', { code: null, signal: 'SIGKILL' }, 'something odd\n');
    assert.equal(e.code, 'backup-command-failed');
    assert.match(e.message, /was killed by SIGKILL: something odd/);
  });

  it('finds the error line among info and warning lines', () => {
    assert.deepEqual(pgBackRestErrorOf('WARN: option x is deprecated\nERROR: [055]: unable to load info file\n'), { code: 55, message: 'unable to load info file' });
  });
});

describe('restore targets', () => {
  const cases: ReadonlyArray<readonly [string, Parameters<typeof targetFlags>[0], string[]]> = [
    ['latest replays every archived segment', { kind: 'latest' }, []],
    ['a time target promotes at the target', { kind: 'time', time: '2026-12-01 10:00:00+00' }, ['--type=time', '--target=2026-12-01 10:00:00+00', '--target-action=promote']],
    ['an exclusive lsn target stops just before it', { kind: 'lsn', lsn: '0/3000100', exclusive: true }, ['--type=lsn', '--target=0/3000100', '--target-exclusive', '--target-action=promote']],
    ['an xid target', { kind: 'xid', xid: '742' }, ['--type=xid', '--target=742', '--target-action=promote']],
    ['a named restore point', { kind: 'name', name: 'before-deploy' }, ['--type=name', '--target=before-deploy', '--target-action=promote']],
  ];
  for (const [name, target, flags] of cases) it(name, () => assert.deepEqual(targetFlags(target), flags));
});
