import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runWarden, traversableTempDir } from '../support/cli.js';

/** The JSON of `warden chaos run --format json` that other tools read. */
interface ChaosJson {
  seed: number;
  mode: string;
  rounds: { fault: string; target: string; unavailableMs: number | null; lostWrites: number; overlapMs: number; recoveredMs: number | null; skipped?: string }[];
  summary: { rounds: number; injected: number; acked: number; lostWrites: number; overlapMs: number; overlaps: number; violations: string[]; ok: boolean };
}

// A short seeded round (CI): the faults that need no namespaces, against a `warden up` cluster.
describe('warden chaos run against a local cluster', { timeout: 600_000 }, () => {
  let dir = '';
  // If the test runner dies before `after`, stop the detached supervisor (it stops agents and etcd).
  const stopSupervisor = (): void => {
    try {
      const pid = Number(readFileSync(join(dir, 'supervisor.pid'), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGTERM');
    } catch {
      // no supervisor running: nothing to stop
    }
  };

  before(async () => {
    dir = await traversableTempDir('warden-chaos-');
    process.once('exit', stopSupervisor);
    let up = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 240_000 });
    // Under heavy load `warden up` can give up on a supervisor that is merely slow to write its PID
    // file ("the supervisor exited") while the cluster goes on starting; a second `up` reports it.
    if (up.code !== 0 && /the supervisor exited/.test(up.stderr)) up = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 240_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
  });

  let failed = false;
  let lastReport = '';
  after(async () => {
    process.removeListener('exit', stopSupervisor);
    if (dir === '') return;
    if (failed) {
      // Keep the logs of a failed run (agents, PostgreSQL, supervisor), not the data.
      const keep = await mkdtemp(join(tmpdir(), 'warden-chaos-failed-'));
      await cp(dir, keep, { recursive: true, filter: (src) => !/\/(data|run)(\/|$)/.test(src) }).catch((e: unknown) => process.stderr.write(`copying logs: ${String(e)}\n`));
      await writeFile(join(keep, 'chaos-report.json'), lastReport);
      process.stderr.write(`chaos test failed: logs kept in ${keep}\n`);
    }
    await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
    await rm(dir, { recursive: true, force: true });
  });

  // Seed 20261127 orders the rounds crash-postgres, kill, freeze.
  const SEED = 20261127;
  let report: ChaosJson | undefined;
  let context = '';

  it('crashes PostgreSQL, kills and freezes the primary, and reports every round in the documented JSON shape', async () => {
    failed = true;
    const r = await runWarden(['chaos', 'run', '--dir', dir, '--faults', 'kill,freeze,crash-postgres', '--rounds', '3', '--seed', String(SEED), '--format', 'json', '--recovery-timeout', '150'], { timeoutMs: 300_000 });
    // The CLI's progress log, shown when an assertion fails.
    context = `exit ${r.code}\n${r.stderr}`;
    lastReport = r.stdout;
    assert.ok(r.code === 0 || r.code === 1, `exit 0 (promises held) or 1 (broken), not a crash\n${context}`);
    const rep = JSON.parse(r.stdout) as ChaosJson;
    report = rep;
    assert.equal(rep.seed, SEED);
    assert.equal(rep.mode, 'async');
    assert.deepEqual(rep.rounds.map((x) => x.fault), ['crash-postgres', 'kill', 'freeze'], context);
    for (const round of rep.rounds) {
      assert.equal(round.skipped, undefined, `${round.fault} was not injected\n${context}`);
      assert.match(round.target, /^demo-\d$/);
      assert.equal(typeof round.lostWrites, 'number');
      assert.equal(typeof round.overlapMs, 'number');
      assert.ok(round.unavailableMs !== null && round.unavailableMs >= 0, `${round.fault}: a write succeeded after the fault\n${context}`);
    }
    // A frozen or killed primary is replaced only after its lease (ttl 2 s) runs out.
    const kill = rep.rounds.find((x) => x.fault === 'kill');
    assert.ok((kill?.unavailableMs ?? 0) >= 1000, `kill unavailability ${kill?.unavailableMs ?? '?'} ms`);
    assert.ok(rep.summary.acked > 100, `only ${rep.summary.acked} writes acknowledged`);
    assert.equal(typeof rep.summary.overlapMs, 'number');
    assert.ok(Array.isArray(rep.summary.violations));
    assert.equal(rep.summary.ok, r.code === 0);
    // A crash in place and a killed node (PostgreSQL dies with its agent) never leave two writable primaries.
    for (const round of rep.rounds.filter((x) => x.fault !== 'freeze')) {
      assert.equal(round.overlapMs, 0, `${round.fault}: overlapping writable primaries\n${context}`);
      assert.ok(round.recoveredMs !== null && round.recoveredMs > 0, `${round.fault}: the cluster recovered\n${context}`);
    }
    failed = false;
  });

  // Known product bugs (docs/benchmarks.md, "Chaos"): after a freeze, the thawed old primary can
  // acknowledge a write before its agent's fencing timer stops it (a few ms of overlap), and a
  // rejoining replica whose replication slot was dropped can block in start for 120 s. This test
  // runs and shows its failure, but does not gate CI until they are fixed: then remove `todo`.
  it('keeps every promise through the freeze: no overlapping primaries, the old primary rejoins', { todo: 'freeze: thaw-before-fence overlap and dropped-slot rejoin stall (product bugs)' }, () => {
    assert.ok(report, 'the run produced a report');
    const freeze = report.rounds.find((x) => x.fault === 'freeze');
    assert.equal(freeze?.overlapMs, 0, `freeze: overlapping writable primaries\n${context}`);
    assert.ok(freeze?.recoveredMs !== null && freeze?.recoveredMs !== undefined && freeze.recoveredMs < 60_000, `freeze: rejoin ${freeze?.recoveredMs ?? '?'} ms\n${context}`);
    assert.equal(report.summary.ok, true, `${report.summary.violations.join('\n')}\n${context}`);
  });

  it('refuses namespace-only and unknown faults with exit 2 and says why', async () => {
    const ns = await runWarden(['chaos', 'run', '--dir', dir, '--faults', 'partition'], { timeoutMs: 30_000 });
    assert.equal(ns.code, 2);
    assert.match(ns.stderr, /partition needs each node in its own network namespace/);
    const unknown = await runWarden(['chaos', 'run', '--dir', dir, '--faults', 'kil'], { timeoutMs: 30_000 });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown fault "kil"/);
  });
});
