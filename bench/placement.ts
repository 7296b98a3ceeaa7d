/**
 * Placement engine benchmark: 1,000 instances (200 clusters × 5) on 500 nodes in 10 zones, each
 * cluster with required pod anti-affinity per host, a DoNotSchedule zone spread (maxSkew 1) and
 * the operators' two default soft spread constraints, placed one at a time in one call as the
 * controller will. Prints the median and spread over several runs, memory, and the ratio against
 * a simple reference measured in the same run: least-loaded placement that only looks at every
 * node once per instance (no rules). Goal: ≤ 1 s per 1,000 instances.
 *
 *   npm run bench:placement -- [--runs 7] [--clusters 200] [--replicas 5] [--nodes 500] [--zones 10]
 */
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { clusterInstances, placeInstances } from '../src/placement/index.js';
import type { Affinity, InstanceToPlace, Occupant, PlacementInput, PlacementNode, PlacementResult } from '../src/placement/index.js';
import { now, parseOptions } from './support.js';

const opts = parseOptions({ runs: 7, clusters: 200, replicas: 5, nodes: 500, zones: 10 });
const PREFIX = 'postgres-operator.crunchydata.com';

function buildInput(): PlacementInput {
  const nodes: PlacementNode[] = Array.from({ length: opts.nodes }, (_, i) => {
    const name = `node${String(i + 1).padStart(3, '0')}`;
    return {
      name,
      labels: { 'kubernetes.io/hostname': name, 'topology.kubernetes.io/zone': `zone${(i % opts.zones) + 1}`, rack: `rack${i % 25}` },
      // Every 50th node is reserved for other work, so TaintToleration has something to reject.
      taints: i % 50 === 49 ? [{ key: 'dedicated', value: 'batch', effect: 'NoSchedule' }] : [],
      unschedulable: false,
    };
  });
  // Some unrelated workloads already running, one per 5 nodes.
  const occupants: Occupant[] = nodes.filter((_, i) => i % 5 === 0).map((n, i) => ({ name: `web-${i}`, node: n.name, namespace: 'default', labels: { app: 'web' }, terminating: false }));
  const instances: InstanceToPlace[] = [];
  for (let c = 0; c < opts.clusters; c++) {
    const name = `pg${c}`;
    const selector = { matchLabels: { [`${PREFIX}/cluster`]: name }, matchExpressions: [] };
    const affinity: Affinity = { podAntiAffinity: { required: [{ labelSelector: selector, namespaces: [], topologyKey: 'kubernetes.io/hostname' }], preferred: [] } };
    instances.push(
      ...clusterInstances({
        name,
        kind: 'PostgresCluster',
        namespace: 'default',
        disableDefaultPodScheduling: false,
        members: Array.from({ length: opts.replicas }, (_, i) => ({ name: `${name}-${i + 1}`, instanceSet: 'pgha1' })),
        instanceSets: [
          {
            name: 'pgha1',
            labels: {},
            affinity,
            tolerations: [],
            topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: selector, matchLabelKeys: [] }],
          },
        ],
      }),
    );
  }
  return { nodes, occupants, instances };
}

/** The reference: least-loaded node with no rules at all, one pass over the nodes per instance. */
function referencePlacement(input: PlacementInput): string[] {
  const load = new Map<string, number>(input.nodes.map((n) => [n.name, 0]));
  for (const o of input.occupants) load.set(o.node, (load.get(o.node) ?? 0) + 1);
  return input.instances.map(() => {
    let best: string | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (const n of input.nodes) {
      const l = load.get(n.name) ?? 0;
      if (l < bestLoad || (l === bestLoad && best !== undefined && n.name < best)) {
        best = n.name;
        bestLoad = l;
      }
    }
    load.set(best ?? '', bestLoad + 1);
    return best ?? '';
  });
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Checks the outcome so that a fast wrong answer cannot pass: all placed, no host shared within a cluster, zones within maxSkew. */
function check(input: PlacementInput, result: PlacementResult): string[] {
  const problems: string[] = [];
  if (result.pending.length > 0) problems.push(`${result.pending.length} Pending`);
  const zoneOf = new Map(input.nodes.map((n) => [n.name, n.labels['topology.kubernetes.io/zone'] ?? '']));
  const byCluster = new Map<string, string[]>();
  result.placements.forEach((p, i) => {
    const cluster = input.instances[i]?.labels[`${PREFIX}/cluster`] ?? '';
    byCluster.set(cluster, [...(byCluster.get(cluster) ?? []), p.node ?? '']);
  });
  for (const [cluster, nodes] of byCluster) {
    if (new Set(nodes).size !== nodes.length) problems.push(`${cluster} shares a host`);
    const perZone = new Map<string, number>();
    for (let z = 1; z <= opts.zones; z++) perZone.set(`zone${z}`, 0);
    for (const n of nodes) perZone.set(zoneOf.get(n) ?? '', (perZone.get(zoneOf.get(n) ?? '') ?? 0) + 1);
    const counts = [...perZone.values()];
    if (Math.max(...counts) - Math.min(...counts) > 1) problems.push(`${cluster} zone skew ${Math.max(...counts) - Math.min(...counts)}`);
  }
  return problems;
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const gc = (globalThis as { gc?: () => void }).gc;

const input = buildInput();
process.stdout.write(
  `placement bench: ${input.instances.length} instances (${opts.clusters} clusters × ${opts.replicas}) on ${input.nodes.length} nodes in ${opts.zones} zones, ${input.occupants.length} occupants; ${opts.runs} runs; load average ${loadavg()[0]?.toFixed(2)}\n`,
);

// Warm-up (JIT) for both, not counted.
placeInstances(input);
referencePlacement(input);

// GC pauses per run, and CPU time next to wall time: on a shared 2-core machine a slow run is either
// garbage collection (the result holds 500,000 verdicts) or another process taking the core.
let gcMs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
});
gcObserver.observe({ entryTypes: ['gc'] });
const engineCpuMs: number[] = [];
const engineGcMs: number[] = [];
const engineMs: number[] = [];
const referenceMs: number[] = [];
let retainedBytes = 0;
let last: PlacementResult | undefined;
for (let r = 0; r < opts.runs; r++) {
  // Drop the previous result first: a caller holds one plan at a time, and two would double the
  // live heap that every collection during the run has to walk.
  last = undefined;
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const gcBefore = gcMs;
  const cpu0 = process.cpuUsage();
  const t0 = now();
  last = placeInstances(input);
  const t1 = now();
  const cpu = process.cpuUsage(cpu0);
  engineCpuMs.push((cpu.user + cpu.system) / 1000);
  await new Promise((r) => setImmediate(r)); // let the observer deliver this run's GC entries
  engineGcMs.push(gcMs - gcBefore);
  gc?.();
  retainedBytes = Math.max(retainedBytes, process.memoryUsage().heapUsed - heapBefore);
  const t2 = now();
  referencePlacement(input);
  const t3 = now();
  engineMs.push(t1 - t0);
  referenceMs.push(t3 - t2);
}
const problems = last === undefined ? ['no run'] : check(input, last);
const verdicts = last?.placements.reduce((sum, p) => sum + p.nodes.length, 0) ?? 0;
const m = median(engineMs);
const ref = median(referenceMs);
const lines = [
  `engine:    median ${m.toFixed(0)} ms (min ${Math.min(...engineMs).toFixed(0)}, max ${Math.max(...engineMs).toFixed(0)}; runs ${engineMs.map((x) => x.toFixed(0)).join(' ')}) = ${((m * 1000) / input.instances.length).toFixed(0)} µs per instance`,
  `           CPU ${median(engineCpuMs).toFixed(0)} ms median (the process's user + system time, both cores), GC pauses ${median(engineGcMs).toFixed(0)} ms median (max ${Math.max(...engineGcMs).toFixed(0)})`,
  `reference: median ${ref.toFixed(1)} ms (least-loaded, no rules); engine / reference = ${(m / ref).toFixed(0)}×`,
  `memory:    result retained ${gc === undefined ? 'n/a (run with --expose-gc)' : mib(retainedBytes)} for ${verdicts.toLocaleString('en')} node verdicts; max RSS ${mib(process.resourceUsage().maxRSS * 1024)}`,
  `check:     ${problems.length === 0 ? 'all placed, no cluster shares a host, every cluster within zone maxSkew 1' : problems.slice(0, 5).join('; ')}`,
  `goal:      ≤ 1000 ms for ${input.instances.length} instances: ${m <= 1000 ? 'met' : 'NOT met'}; load average at end ${loadavg()[0]?.toFixed(2)}`,
];
gcObserver.disconnect();
process.stdout.write(`${lines.join('\n')}\n`);
if (problems.length > 0) process.exitCode = 1;
