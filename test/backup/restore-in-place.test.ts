import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { eventually } from '../../src/core/deadline.js';
import type { InPlaceRestoreOutput } from '../../src/cli/backup-commands.js';
import { backupClusterSpec } from '../support/backup-spec.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, sql } from '../support/cluster.js';

// `warden restore --in-place` (point-in-time recovery of the running cluster) against real
// pgBackRest 2.45, PostgreSQL 15 and etcd, on three members with a writer inserting one row per
// transaction the whole time. The writer marks an instant T between two of its inserts (the
// server's clock_timestamp() on its own connection): every row it had acknowledged before the mark
// committed before T, every later one after it. Restoring to T keeps exactly the former. A sampler
// reads pg_is_in_recovery() of every member throughout: never two writable at once. A second
// in-place restore, to an instant on the new timeline, works the same. Bad targets: exit 2 and the
// cluster as it was (same timeline, not paused, still taking writes).

interface Mark {
  readonly time: string;
  /** Ids acknowledged before the mark, in order. */
  readonly acked: readonly number[];
  /** Ids in the table at the mark: every row committed before it. */
  readonly present: readonly number[];
}

/** One insert per transaction into `rows` on host:port, reconnecting after errors; marks instants between inserts. */
class Writer {
  private nextId = 1;
  private client: pg.Client | undefined;
  private stopped = false;
  private markWanted: ((m: Mark) => void) | undefined;
  readonly acked: number[] = [];
  private loop: Promise<unknown> = Promise.resolve();

  constructor(private readonly password: string, private readonly host: string, private readonly port: number) {}

  start(): void {
    this.loop = eventually(async () => {
      if (this.stopped) return true;
      await this.step();
      return undefined;
    }, { timeoutMs: 900_000, intervalMs: 20, what: 'the writer to be stopped' });
  }

  private async step(): Promise<void> {
    try {
      if (this.client === undefined) {
        const c = new pg.Client({ host: this.host, port: this.port, user: 'postgres', password: this.password, database: 'postgres', connectionTimeoutMillis: 1500, query_timeout: 3000 });
        c.on('error', () => undefined);
        await c.connect();
        this.client = c;
      }
      const want = this.markWanted;
      if (want !== undefined) {
        // One statement: its snapshot holds exactly the rows committed before its clock_timestamp()
        // (this connection is the only writer).
        const r = await this.client.query<{ t: string; ids: number[] | null }>('SELECT clock_timestamp()::text AS t, array_agg(id ORDER BY id) AS ids FROM rows');
        this.markWanted = undefined;
        want({ time: String(r.rows[0]?.t), acked: [...this.acked], present: r.rows[0]?.ids ?? [] });
        return;
      }
      const id = this.nextId++;
      await this.client.query('INSERT INTO rows (id) VALUES ($1)', [id]);
      this.acked.push(id);
    } catch {
      const c = this.client;
      this.client = undefined;
      await c?.end().catch(() => undefined);
    }
  }

  mark(): Promise<Mark> {
    return new Promise((resolve) => (this.markWanted = resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop.catch(() => undefined);
    await this.client?.end().catch(() => undefined);
  }
}

describe('warden restore --in-place: PITR of the running cluster (real pgBackRest, PostgreSQL, etcd)', { timeout: 900_000 }, () => {
  let dir = '';
  let rt = '';
  let leader = { name: '', host: '', port: 0 };
  let members: { name: string; host: string; port: number }[] = [];
  let writer: Writer | undefined;

  const restore = async (args: readonly string[]): Promise<{ code: number | null; out: InPlaceRestoreOutput | undefined; text: string }> => {
    const r = await runWarden(['restore', '--dir', rt, '--format', 'json', '--timeout-seconds', '300', ...args], { timeoutMs: 330_000 });
    return { code: r.code, out: r.code === 0 ? (JSON.parse(r.stdout) as InPlaceRestoreOutput) : undefined, text: `${r.stdout}\n${r.stderr}` };
  };
  const leaderSql = (text: string): ReturnType<typeof sql> => sql(rt, leader.host, leader.port, text);
  const waitForRows = (n: number): Promise<true> =>
    eventually(() => ((writer?.acked.length ?? 0) >= n ? true : undefined), { timeoutMs: 120_000, intervalMs: 100, what: `${n} acknowledged writes` });
  /** Switches WAL on the leader and waits until that segment is in the repository. */
  const archiveNow = async (): Promise<void> => {
    const last = String((await leaderSql('SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0]?.['w']);
    await eventually(async () => (String((await leaderSql('SELECT last_archived_wal FROM pg_stat_archiver')).rows[0]?.['last_archived_wal']) >= last ? true : undefined), {
      timeoutMs: 120_000,
      intervalMs: 300,
      what: `${last} archived`,
    });
  };
  /** Reads pg_is_in_recovery() of every member until `done` resolves; returns the most members writable in one round. */
  const sampleWritable = async (done: Promise<unknown>): Promise<{ maxWritable: number; rounds: number }> => {
    let finished = false;
    void done.finally(() => (finished = true));
    let maxWritable = 0;
    let rounds = 0;
    await eventually(async () => {
      const writable = await Promise.all(members.map(async (m) => (await sql(rt, m.host, m.port, 'SELECT pg_is_in_recovery() AS r').catch(() => undefined))?.rows[0]?.['r'] === false));
      maxWritable = Math.max(maxWritable, writable.filter(Boolean).length);
      rounds++;
      return finished ? true : undefined;
    }, { timeoutMs: 700_000, intervalMs: 100, what: 'the restore to end' });
    return { maxWritable, rounds };
  };
  const idsInTable = async (): Promise<number[]> => (await leaderSql('SELECT id FROM rows ORDER BY id')).rows.map((r) => Number(r['id']));
  /** Every member on `timeline`: the leader running, each replica streaming (its WAL receiver too). */
  const assertAllOn = async (timeline: number): Promise<void> => {
    const l = await listCluster(rt);
    for (const m of l.members) {
      assert.equal(m.timeline, timeline, `${m.name} is on timeline ${timeline}`);
      assert.equal(m.state, m.role === 'leader' ? 'running' : 'streaming', `${m.name}: ${m.state}`);
    }
    assert.equal(l.members.length, 3);
    for (const m of members.filter((x) => x.name !== leader.name)) {
      const r = await sql(rt, m.host, m.port, 'SELECT status, received_tli FROM pg_stat_wal_receiver');
      assert.equal(r.rows[0]?.['status'], 'streaming', m.name);
      assert.equal(Number(r.rows[0]?.['received_tli']), timeline, m.name);
    }
  };

  before(async () => {
    dir = await traversableTempDir('warden-inplace-');
    rt = join(dir, 'rt');
    await writeFile(join(dir, 'cluster.yaml'), backupClusterSpec('inplace', 3));
  });

  after(async () => {
    await writer?.stop();
    if (dir !== '' && process.env['WARDEN_TEST_KEEP'] !== '1') {
      await runWarden(['down', '--dir', rt, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sets up: three members, a backup, a writer inserting one row per transaction', async () => {
    const up = await runWarden(['up', '--static', '-f', join(dir, 'cluster.yaml'), '--dir', rt], { timeoutMs: 400_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    const l = await eventually(async () => {
      const x = await listCluster(rt);
      return x.members.length === 3 && x.members.every((m) => m.state === (m.role === 'leader' ? 'running' : 'streaming')) ? x : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: 'a leader and two streaming replicas' });
    const lm = l.members.find((m) => m.role === 'leader');
    assert.ok(lm);
    leader = { name: lm.name, host: lm.host, port: lm.port };
    members = l.members.map((m) => ({ name: m.name, host: m.host, port: m.port }));
    assert.equal(members.length, 3);
    await leaderSql('CREATE TABLE rows (id int PRIMARY KEY)');
    const b = await runWarden(['backup', '--dir', rt, '--type', 'full', '--wait'], { timeoutMs: 600_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    writer = new Writer((await readFile(join(rt, 'secrets', 'superuser.password'), 'utf8')).trim(), leader.host, leader.port);
    writer.start();
    await waitForRows(30);
  });

  it('refuses bad targets with exit 2 and leaves the cluster as it was', async () => {
    const before = await listCluster(rt);
    const timeline = before.members.find((m) => m.role === 'leader')?.timeline;
    const cases: ReadonlyArray<readonly [string[], RegExp]> = [
      [['--in-place', '--time', '2020-01-01T00:00:00Z'], /is before the end of the first backup/],
      [['--in-place', '--time', '2999-01-01T00:00:00Z'], /is in the future/],
      [['--in-place', '--time', 'yesterday'], /not an instant with a time zone/],
      [['--in-place', '--lsn', 'FF/0'], /is after the latest WAL in the repository/],
      [['--in-place', '--latest', '--into', 'x'], /give --into NEW or --in-place, not both/],
      [['--in-place'], /give exactly one target/],
    ];
    for (const [args, re] of cases) {
      const r = await restore(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.text}`);
      assert.match(r.text, re, args.join(' '));
    }
    const now = await listCluster(rt);
    assert.deepEqual(now.members.map((m) => [m.name, m.role, m.timeline]), before.members.map((m) => [m.name, m.role, m.timeline]));
    assert.equal(now.members.find((m) => m.role === 'leader')?.timeline, timeline);
    const show = await runWarden(['show-config', '--dir', rt], { timeoutMs: 20_000 });
    assert.doesNotMatch(show.stdout, /pause["']?:\s*true/, 'not paused');
    const n = writer?.acked.length ?? 0;
    await waitForRows(n + 5);
  });

  let firstTimeline = 0;
  let keptAfterFirst: number[] = [];
  let maxAckedBeforeFirst = 0;

  it('restores in place to T1: exactly the rows committed before T1, all members streaming on a new timeline, never two writable', async () => {
    assert.ok(writer);
    const t1 = await writer.mark();
    await waitForRows(t1.acked.length + 20);
    await archiveNow();
    const fromTimeline = (await listCluster(rt)).members.find((m) => m.role === 'leader')?.timeline ?? 0;
    maxAckedBeforeFirst = writer.acked.at(-1) ?? 0;
    const running = restore(['--in-place', '--time', t1.time, '--check-sql', 'SELECT count(*) FROM rows']);
    const sampled = await sampleWritable(running);
    const r = await running;
    assert.equal(r.code, 0, r.text);
    assert.ok(r.out);
    assert.equal(sampled.maxWritable <= 1, true, `at most one writable member in every round (${sampled.rounds} rounds)`);
    assert.ok(sampled.rounds >= 5, `sampled ${sampled.rounds} rounds`);
    assert.equal(r.out.fromTimeline, fromTimeline);
    assert.ok(r.out.timeline > fromTimeline, `new timeline ${r.out.timeline} after ${fromTimeline}`);
    assert.equal(r.out.check?.value, String(t1.acked.length), 'the private postmaster saw exactly the rows before T1');
    firstTimeline = r.out.timeline;
    const ids = await idsInTable();
    assert.deepEqual(ids.filter((id) => id <= maxAckedBeforeFirst), t1.acked, 'exactly the rows committed before T1 (later ones are gone)');
    assert.deepEqual(t1.present, t1.acked, 'the writer is the only one');
    keptAfterFirst = [...t1.acked];
    await assertAllOn(firstTimeline);
    // Writes reach the primary again.
    await waitForRows(writer.acked.length + 10);
    process.stdout.write(
      `# in-place restore 1: stop ${r.out.stopSeconds} s, restore ${r.out.restoreSeconds} s, recovery ${r.out.recoverySeconds} s, until all stream ${r.out.rejoinSeconds} s, total ${r.out.totalSeconds} s; ${sampled.rounds} sampling rounds, max writable ${sampled.maxWritable}\n`,
    );
  });

  it('a second in-place restore, to T2 on the new timeline: exactly those rows, all members on the newest timeline', async () => {
    assert.ok(writer);
    await waitForRows(writer.acked.length + 10);
    const t2 = await writer.mark();
    await waitForRows(t2.acked.length + 20);
    await archiveNow();
    // Rows acknowledged between T1 and the first restore's stop are gone (after T1): the table at
    // the mark, not the writer's acknowledgements, is what T2 must bring back.
    const kept = new Set(keptAfterFirst);
    const expected = [...t2.present];
    assert.deepEqual(expected.filter((id) => id <= maxAckedBeforeFirst), t2.acked.filter((id) => kept.has(id)));
    assert.ok(expected.some((id) => id > maxAckedBeforeFirst), 'T2 holds rows written on the new timeline');
    const maxAckedBeforeSecond = writer.acked.at(-1) ?? 0;
    const running = restore(['--in-place', '--time', t2.time]);
    const sampled = await sampleWritable(running);
    const r = await running;
    assert.equal(r.code, 0, r.text);
    assert.ok(r.out);
    assert.ok(sampled.maxWritable <= 1, `at most one writable member in every round (${sampled.rounds} rounds)`);
    assert.equal(r.out.fromTimeline, firstTimeline);
    assert.ok(r.out.timeline > firstTimeline, `newest timeline ${r.out.timeline} after ${firstTimeline}`);
    const ids = (await idsInTable()).filter((id) => id <= maxAckedBeforeSecond);
    const missing = expected.filter((id) => !ids.includes(id));
    const extra = ids.filter((id) => !expected.includes(id));
    assert.deepEqual(ids, expected, `exactly the rows committed before T2 along the current history (missing ${missing.length}: ${missing[0] ?? '-'}…${missing.at(-1) ?? '-'}; extra ${extra.length}: ${extra[0] ?? '-'}…${extra.at(-1) ?? '-'}; kept after the first ${keptAfterFirst.length}, max before first ${maxAckedBeforeFirst}, T2 ${t2.time})\n${r.text}`);
    await assertAllOn(r.out.timeline);
    await waitForRows(writer.acked.length + 10);
    const hist = await runWarden(['history', '--dir', rt], { timeoutMs: 20_000 });
    assert.match(hist.stdout, /in-place restore/);
    process.stdout.write(
      `# in-place restore 2: stop ${r.out.stopSeconds} s, restore ${r.out.restoreSeconds} s, recovery ${r.out.recoverySeconds} s, until all stream ${r.out.rejoinSeconds} s, total ${r.out.totalSeconds} s; ${sampled.rounds} sampling rounds, max writable ${sampled.maxWritable}\n`,
    );
  });
});
