import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isWardenError } from '../core/errors.js';
import { cancelledError, parseCopyProgress } from './progress.js';

test('parseCopyProgress reads the last pg_basebackup report of a chunk', () => {
  const chunk = '    0/23456 kB (0%), 0/1 tablespace\n11728/23456 kB (50%), 0/1 tablespace\n23456/23456 kB (100%), 1/1 tablespace\n';
  assert.deepEqual(parseCopyProgress(chunk), { doneBytes: 23456 * 1024, totalBytes: 23456 * 1024 });
});

test('parseCopyProgress reads pg_rewind reports, with carriage returns too', () => {
  assert.deepEqual(parseCopyProgress('\r512/2048 kB (25%) copied\r1024/2048 kB (50%) copied'), { doneBytes: 1024 * 1024, totalBytes: 2048 * 1024 });
});

test('parseCopyProgress ignores text without a report and a zero total', () => {
  assert.equal(parseCopyProgress('pg_basebackup: initiating base backup, waiting for checkpoint to complete\n'), undefined);
  assert.deepEqual(parseCopyProgress('0/0 kB (100%), 1/1 tablespace'), { doneBytes: 0 });
});

test('cancelledError carries the abort reason', () => {
  const c = new AbortController();
  c.abort(new Error('primary_start_timeout passed'));
  const e = cancelledError('start', c.signal);
  assert.ok(isWardenError(e, 'operation-cancelled'));
  assert.equal(e.message, 'start cancelled: primary_start_timeout passed');
});
