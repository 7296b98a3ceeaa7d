/**
 * Planned switchover under a steady writer: the write gap (last acknowledged write before the
 * switchover, first after it) and lost writes, over N switchovers with `warden switchover --force`.
 *
 *   npm run build && node --import tsx bench/switchover.ts [--runs 10] [--dir /tmp/warden-bench-switchover]
 *
 * Reference measured in the same run: the writer's largest gap over the same length of time with
 * no switchover (what the machine's scheduling alone costs), and the ratio gap / reference.
 * Patroni 3.0.2 on this machine, quoted by the issue (not measured here): ~2.0 s gap.
 */
import { clusterUp, fmt, logger, now, parseOptions, queryOnce, readState, runBench, sleep, summarize, superuserPassword, table, waitHealthy, warden } from './support.js';
import { SteadyWriter } from './steady-writer.js';

const opts = parseOptions({ runs: 10, dir: '/tmp/warden-bench-switchover', 'max-delay': 1000 });
const log = logger('switchover');

await runBench(async () => {
  const { state } = await clusterUp(opts.dir, log);
  const password = await superuserPassword(opts.dir);
  let h = await waitHealthy(state, 120_000, { password });
  const created = await queryOnce({ host: h.leader.host, port: h.leader.port, password }, 'CREATE TABLE IF NOT EXISTS bench_writes (v bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())');
  if (!created.ok) throw new Error(`cannot create the table: ${created.error}`);
  const writer = new SteadyWriter(await readState(opts.dir), password);
  writer.start();
  await sleep(1000);
  const gaps: number[] = [];
  const refs: number[] = [];
  const cmdMs: number[] = [];
  for (let run = 1; run <= opts.runs; run++) {
    h = await waitHealthy(await readState(opts.dir), 120_000, { password });
    // Reference window: as long as a switchover window, with nothing happening.
    const r0 = now();
    await sleep(3000);
    refs.push(writer.gapWithin(r0, now()));
    await sleep(Math.random() * opts['max-delay']);
    const t0 = now();
    const r = await warden(['switchover', '--dir', opts.dir, '--force'], 90_000);
    const t1 = now();
    if (r.code !== 0) throw new Error(`switchover ${run} failed: ${r.stdout}${r.stderr}`);
    await sleep(2000);
    const gap = writer.gapWithin(t0, now());
    gaps.push(gap);
    cmdMs.push(t1 - t0);
    log(`run ${run}: ${h.leader.name} -> ${/to "([^"]+)"/.exec(r.stdout)?.[1] ?? '?'}: write gap ${fmt(gap, 0)} ms, command ${fmt(t1 - t0, 0)} ms, reference gap ${fmt(refs[refs.length - 1], 0)} ms`);
  }
  await writer.stop();
  h = await waitHealthy(await readState(opts.dir), 120_000, { password });
  const rows = await queryOnce({ host: h.leader.host, port: h.leader.port, password }, 'SELECT v FROM bench_writes', { queryTimeoutMs: 30_000 });
  if (!rows.ok) throw new Error(rows.error);
  const present = new Set(rows.rows.map((x) => Number(x['v'])));
  const lost = writer.acks.filter((a) => !present.has(a.v)).length;
  const g = summarize(gaps);
  const ref = summarize(refs);
  const c = summarize(cmdMs);
  process.stdout.write(`\n${table(['figure', 'median', 'min', 'max', 'p90'], [
    ['write gap (ms)', fmt(g.median, 0), fmt(g.min, 0), fmt(g.max, 0), fmt(g.p90, 0)],
    ['switchover command (ms)', fmt(c.median, 0), fmt(c.min, 0), fmt(c.max, 0), fmt(c.p90, 0)],
    ['reference gap, no switchover (ms)', fmt(ref.median, 0), fmt(ref.min, 0), fmt(ref.max, 0), fmt(ref.p90, 0)],
  ])}\n`);
  process.stdout.write(`acknowledged writes: ${writer.acks.length}, lost: ${lost}, failed attempts: ${writer.failures}\n`);
  process.stdout.write(`ratio write gap / reference gap (medians): ${fmt(g.median / ref.median, 1)}; target: median gap ≤ 1000 ms, 0 lost\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'switchover', runs: opts.runs, gapMs: g, commandMs: c, referenceGapMs: ref, acked: writer.acks.length, lost })}\n`);
});
