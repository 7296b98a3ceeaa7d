import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { repoOptionsOf } from './data-source.js';

describe('repoOptionsOf', () => {
  it('takes the [global] options of one repository (credentials, uri style, CA file), not its path, type or bucket, nor another repository\'s or a stanza section\'s', () => {
    const conf = [
      '# Written by Warden',
      '[global]',
      'lock-path=/l',
      'repo1-path=/r1',
      'repo2-path=/warden/src/repo2',
      'repo2-type=s3',
      'repo2-s3-bucket=bk',
      'repo2-s3-key=K',
      'repo2-s3-key-secret=S=with=equals',
      'repo2-storage-ca-file=/ca.pem',
      'repo1-retention-full=2',
      '',
      '[src]',
      'repo2-s3-uri-style=path',
      'pg1-path=/data',
    ].join('\n');
    assert.deepEqual(repoOptionsOf(conf, 'repo2'), { 'repo2-s3-key': 'K', 'repo2-s3-key-secret': 'S=with=equals', 'repo2-storage-ca-file': '/ca.pem' });
    assert.deepEqual(repoOptionsOf(conf, 'repo3'), {});
  });
});
