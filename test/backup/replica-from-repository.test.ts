import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, sql } from '../support/cluster.js';
import { backupClusterSpec } from '../support/backup-spec.js';

// "Backups": a re-seeded replica is restored from the latest backup (standby restore) instead of a
// pg_basebackup of the primary, then replays the archive and streams — with rows written after the
// backup. Real pgBackRest 2.45, PostgreSQL 15 and etcd.
const SPEC = backupClusterSpec('seed', 2);

describe('replicas from the repository', { timeout: 900_000 }, () => {
  let root = '';
  let rt = '';

  before(async () => {
    root = await traversableTempDir('warden-seed-');
    await writeFile(join(root, 'cluster.yaml'), SPEC);
    rt = join(root, 'rt');
    const up = await runWarden(['up', '--static', '-f', join(root, 'cluster.yaml'), '--dir', rt], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
  });
  after(async () => {
    if (rt !== '') await runWarden(['down', '--dir', rt, '--purge'], { timeoutMs: 180_000 });
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it('re-seeds a replica from the latest backup, not from the primary, and it streams with the rows written after the backup', async () => {
    const l = await eventually(async () => {
      const x = await listCluster(rt);
      return x.members.some((m) => m.state === 'streaming') ? x : undefined;
    }, { timeoutMs: 120_000, what: 'a streaming replica' });
    const leader = l.members.find((m) => m.role === 'leader')!;
    const replica = l.members.find((m) => m.role !== 'leader')!;
    await sql(rt, leader.host, leader.port, "CREATE TABLE seeded AS SELECT g AS id, 'before the backup' AS note FROM generate_series(1, 20000) g");
    const b = await runWarden(['backup', '--dir', rt, '--type', 'full', '--wait'], { timeoutMs: 300_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    await sql(rt, leader.host, leader.port, "INSERT INTO seeded SELECT g, 'after the backup' FROM generate_series(20001, 25000) g");
    const started = performance.now();
    const r = await runWarden(['reinit', replica.name, '--dir', rt, '--wait'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const rows = await eventually(async () => {
      const x = await listCluster(rt);
      if (x.members.find((m) => m.name === replica.name)?.state !== 'streaming') return undefined;
      const c = await sql(rt, replica.host, replica.port, 'SELECT count(*)::int AS n FROM seeded').catch(() => undefined);
      const n = c?.rows[0]?.['n'];
      return n === 25000 ? n : undefined;
    }, { timeoutMs: 180_000, what: `${replica.name} streaming with all 25,000 rows` });
    console.log(`# replica from the repository: ${replica.name} streaming with ${rows} rows ${((performance.now() - started) / 1000).toFixed(1)} s after reinit`);
    const log = await readFile(join(rt, 'members', replica.name, 'agent.log'), 'utf8');
    assert.match(log, /replica seeded from the backup repository/, 'the replica was restored from the repository');
    assert.doesNotMatch(log.slice(log.lastIndexOf('reinitializ')), /cloning with pg_basebackup/, 'no pg_basebackup of the primary after the reinit');
  });
});
