/**
 * Synchronous strict mode under faults: the primary is killed (agent SIGKILLed; its PostgreSQL dies
 * with it) N times under a steady writer; afterwards every acknowledged write must be on the final
 * primary.
 *
 *   npm run build && node --import tsx bench/sync-strict.ts [--rounds 20] [--dir /tmp/warden-bench-sync]
 *
 * Reference measured in the same run: the same number of kills in asynchronous mode is not run
 * (it may lose writes by design); instead each round's unavailability (kill → first acknowledged
 * write) is reported next to the write interval with no fault.
 */
import { clusterUp, fmt, logger, now, parseOptions, queryOnce, readState, runBench, saveLogs, signal, sleep, summarize, superuserPassword, table, waitHealthy, warden } from './support.js';
import { SteadyWriter } from './steady-writer.js';

const opts = parseOptions({ rounds: 20, dir: '/tmp/warden-bench-sync', 'max-delay': 1000 });
const log = logger('sync-strict');

await runBench(async () => {
  const { state } = await clusterUp(opts.dir, log);
  const password = await superuserPassword(opts.dir);
  const edit = await warden(['edit-config', '--dir', opts.dir, '--set', 'synchronous_mode=on', '--set', 'synchronous_mode_strict=true', '--force'], 30_000);
  if (edit.code !== 0) throw new Error(`edit-config failed: ${edit.stderr}`);
  let h = await waitHealthy(state, 120_000, { password });
  const created = await queryOnce({ host: h.leader.host, port: h.leader.port, password }, 'CREATE TABLE IF NOT EXISTS bench_writes (v bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())');
  if (!created.ok) throw new Error(created.error);
  const writer = new SteadyWriter(await readState(opts.dir), password, 2);
  writer.start();
  const unavailable: number[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const st = await readState(opts.dir);
    h = await waitHealthy(st, 180_000, { password });
    // Every member must be in place again (the killed one restarted and streaming) before the next kill.
    const list = await warden(['list', '--dir', opts.dir, '--format', 'json'], 15_000);
    const sync = (JSON.parse(list.stdout) as { members: { role: string }[] }).members.filter((m) => m.role === 'sync_standby').length;
    if (sync === 0) log(`round ${round}: no sync standby listed yet`);
    await sleep(500 + Math.random() * opts['max-delay']);
    const pid = st.members.find((m) => m.name === h.leader.name)?.agentPid;
    if (pid === undefined || pid === null) throw new Error(`no agent pid for ${h.leader.name}`);
    const acksBefore = writer.acks.length;
    const t0 = now();
    signal(pid, 'SIGKILL');
    const deadline = t0 + 60_000;
    while (writer.acks.length === acksBefore || (writer.acks[writer.acks.length - 1]?.member ?? h.leader.name) === h.leader.name) {
      if (now() > deadline) {
        const kept = await saveLogs(opts.dir, `/tmp/warden-bench-sync-logs-${new Date().toISOString().replace(/:/g, '-')}`);
        throw new Error(`round ${round}: no write acknowledged by a new primary within 60 s (logs kept in ${kept})`);
      }
      await sleep(10);
    }
    const firstAfter = writer.acks.find((a, i) => i >= acksBefore && a.member !== h.leader.name);
    unavailable.push((firstAfter?.at ?? now()) - t0);
    log(`round ${round}: killed ${h.leader.name}; writes resumed on ${firstAfter?.member} after ${fmt(unavailable[unavailable.length - 1], 0)} ms`);
  }
  await writer.stop();
  h = await waitHealthy(await readState(opts.dir), 180_000, { password });
  const rows = await queryOnce({ host: h.leader.host, port: h.leader.port, password }, 'SELECT v FROM bench_writes', { queryTimeoutMs: 30_000 });
  if (!rows.ok) throw new Error(rows.error);
  const present = new Set(rows.rows.map((x) => Number(x['v'])));
  const lost = writer.acks.filter((a) => !present.has(a.v));
  const u = summarize(unavailable);
  process.stdout.write(`\n${table(['figure', 'median', 'min', 'max', 'p90'], [['unavailable after a kill (ms)', fmt(u.median, 0), fmt(u.min, 0), fmt(u.max, 0), fmt(u.p90, 0)]])}\n`);
  process.stdout.write(`rounds: ${opts.rounds}, acknowledged writes: ${writer.acks.length}, missing on the final primary: ${lost.length}${lost.length > 0 ? ` (first: ${lost.slice(0, 5).map((a) => a.v).join(', ')})` : ''}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'sync-strict', rounds: opts.rounds, acked: writer.acks.length, lost: lost.length, unavailableMs: u })}\n`);
  if (lost.length > 0) process.exitCode = 1;
});
