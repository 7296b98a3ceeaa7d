/**
 * Idle footprint of the agents: RSS and CPU of each agent process of a healthy, idle cluster over a
 * window, against the same figures for the etcd member processes measured in the same window.
 *
 *   npm run build && node --import tsx bench/idle.ts [--seconds 60] [--dir /tmp/warden-bench-idle]
 *
 * RSS: VmRSS from /proc/<pid>/status, sampled every second (median and max per process).
 * CPU: (utime + stime) from /proc/<pid>/stat at the end minus at the start, in clock ticks
 * (getconf CLK_TCK), over the wall time of the window: % of one core. The agent alone is measured
 * (not its PostgreSQL children).
 */
import {
  clockTicks,
  clusterUp,
  fmt,
  logger,
  machine,
  machineLine,
  now,
  parseOptions,
  procStat,
  readState,
  rssBytes,
  runBench,
  sleep,
  summarize,
  superuserPassword,
  table,
  waitHealthy,
} from './support.js';

const opts = parseOptions({ seconds: 60, dir: '/tmp/warden-bench-idle', settle: 5 });
const log = logger('idle');
const MB = 1024 * 1024;

interface Proc {
  readonly label: string;
  readonly kind: 'agent' | 'etcd';
  readonly pid: number;
}

interface Measured extends Proc {
  readonly rssMedianMb: number;
  readonly rssMaxMb: number;
  readonly cpuPct: number;
}

await runBench(async () => {
  const machineAtStart = machine();
  const { dir } = opts;
  const { state: first } = await clusterUp(dir, log);
  const password = await superuserPassword(dir);
  await waitHealthy(first, 90_000, { password });
  log(`healthy; letting it settle ${opts.settle} s`);
  await sleep(opts.settle * 1000);
  const state = await readState(dir);
  await waitHealthy(state, 30_000, { password });
  const procs: Proc[] = [
    ...state.members.flatMap((m): Proc[] => (m.agentPid === null ? [] : [{ label: `agent ${m.name}`, kind: 'agent', pid: m.agentPid }])),
    ...(state.etcdPids ?? []).flatMap((pid, i): Proc[] => (pid === null ? [] : [{ label: `etcd${i + 1}`, kind: 'etcd', pid }])),
  ];
  if (procs.filter((p) => p.kind === 'agent').length !== state.members.length) throw new Error('state.json lacks an agent PID');
  if (!procs.some((p) => p.kind === 'etcd')) throw new Error('state.json has no etcdPids: nothing to compare with');
  const hz = clockTicks();

  const startTicks = new Map<number, number>();
  for (const p of procs) {
    const st = await procStat(p.pid);
    if (st === undefined) throw new Error(`${p.label} (pid ${p.pid}) is gone`);
    startTicks.set(p.pid, st.ticks);
  }
  const t0 = now();
  const rss = new Map<number, number[]>(procs.map((p) => [p.pid, []]));
  log(`sampling ${procs.length} processes for ${opts.seconds} s (CLK_TCK ${hz})`);
  const end = t0 + opts.seconds * 1000;
  while (now() < end) {
    for (const p of procs) {
      const r = await rssBytes(p.pid);
      if (r !== undefined) rss.get(p.pid)?.push(r);
    }
    await sleep(Math.min(1000, Math.max(0, end - now())));
  }
  const wallS = (now() - t0) / 1000;
  const measured: Measured[] = [];
  for (const p of procs) {
    const st = await procStat(p.pid);
    if (st === undefined) throw new Error(`${p.label} (pid ${p.pid}) exited during the window`);
    const ticks = st.ticks - (startTicks.get(p.pid) ?? st.ticks);
    const r = summarize(rss.get(p.pid) ?? []);
    measured.push({ ...p, rssMedianMb: r.median / MB, rssMaxMb: r.max / MB, cpuPct: (100 * ticks) / hz / wallS });
  }
  // The same PIDs at the end: no agent was restarted in the window.
  const after = await readState(dir);
  const restarted = after.members.filter((m) => !procs.some((p) => p.pid === m.agentPid)).map((m) => m.name);
  const healthyAfter = await waitHealthy(after, 10_000, { password }).then(
    () => true,
    () => false,
  );

  const agents = measured.filter((m) => m.kind === 'agent');
  const etcds = measured.filter((m) => m.kind === 'etcd');
  const aRss = summarize(agents.map((m) => m.rssMedianMb));
  const aRssMax = summarize(agents.map((m) => m.rssMaxMb));
  const aCpu = summarize(agents.map((m) => m.cpuPct));
  const eRss = summarize(etcds.map((m) => m.rssMedianMb));
  const eCpu = summarize(etcds.map((m) => m.cpuPct));

  process.stdout.write(`\nIdle footprint over ${wallS.toFixed(1)} s (${Math.round(wallS)} RSS samples per process)\n\n`);
  process.stdout.write(
    `${table(
      ['process', 'pid', 'RSS median MB', 'RSS max MB', 'CPU % of a core'],
      measured.map((m) => [m.label, String(m.pid), fmt(m.rssMedianMb, 1), fmt(m.rssMaxMb, 1), fmt(m.cpuPct, 2)]),
    )}\n\n`,
  );
  process.stdout.write(
    `${table(
      ['figure', 'agents median', 'agents min', 'agents max', 'etcd median (ref)', 'agent / etcd'],
      [
        ['RSS MB', fmt(aRss.median, 1), fmt(aRss.min, 1), fmt(aRss.max, 1), fmt(eRss.median, 1), fmt(aRss.median / eRss.median, 2)],
        ['CPU % of a core', fmt(aCpu.median, 2), fmt(aCpu.min, 2), fmt(aCpu.max, 2), fmt(eCpu.median, 2), fmt(aCpu.median / eCpu.median, 2)],
      ],
    )}\n\n`,
  );
  process.stdout.write(`targets: RSS ≤ 60 MB → ${aRssMax.max <= 60 ? 'met (every sample)' : aRss.max <= 60 ? 'met (medians), a sample above' : 'NOT met'}; CPU ≤ 1 % → ${aCpu.max <= 1 ? 'met (every agent)' : aCpu.median <= 1 ? 'met (median), not every agent' : 'NOT met'}\n`);
  if (restarted.length > 0) process.stdout.write(`WARNING: agents restarted during the window: ${restarted.join(', ')}\n`);
  if (!healthyAfter) process.stdout.write('WARNING: the cluster was not healthy at the end of the window\n');
  const machineAtEnd = machine();
  process.stdout.write(`${machineLine('machine at start', machineAtStart)}\n${machineLine('machine at end', machineAtEnd)}\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'idle',
      machine: { start: machineAtStart, end: machineAtEnd },
      seconds: wallS,
      clkTck: hz,
      agentRssMb: aRss,
      agentRssMaxMb: aRssMax,
      agentCpuPct: aCpu,
      etcdRssMb: eRss,
      etcdCpuPct: eCpu,
      rssRatioAgentOverEtcd: aRss.median / eRss.median,
      cpuRatioAgentOverEtcd: aCpu.median / eCpu.median,
      restarted,
      healthyAfter,
      perProcess: measured,
    })}\n`,
  );
});
