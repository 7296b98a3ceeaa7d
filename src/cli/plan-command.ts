import { otherOccupants, parseStoredSpecs, planNodes } from '../controller/snapshot-plan.js';
import { clusterInstances, placeInstances, type PlacementInput } from '../placement/index.js';
import { formatSpecError, loadClusterSpec, loadNodesFile, type ClusterSpec } from '../spec/index.js';
import { controlClient, readControl } from './cluster-commands.js';
import { planJson, renderPlan } from './plan-report.js';

/** Exit codes of `warden plan`: every instance placed, some Pending, invalid input. */
export const PLAN_EXIT = { placed: 0, pending: 3, invalid: 2 } as const;

/**
 * `warden plan`: places the spec's instances on the nodes of a nodes file (offline), or with
 * `--etcd` on the nodes registered now (cordoned and draining ones unschedulable, other clusters'
 * workloads as occupants), and explains each decision. Nothing is stored.
 */
export async function runPlan(opts: { file: string; nodes?: string; etcd?: string; format: string }): Promise<number> {
  const err = (s: string): void => void process.stderr.write(`${s}\n`);
  if ((opts.nodes === undefined) === (opts.etcd === undefined)) {
    err('warden plan: give --nodes <nodes.yaml> (offline) or --etcd URLS (the registered nodes), not both');
    return PLAN_EXIT.invalid;
  }
  const spec = await loadClusterSpec(opts.file);
  const nodes = opts.nodes === undefined ? undefined : await loadNodesFile(opts.nodes);
  const errors = [...(spec.ok ? [] : spec.errors), ...(nodes === undefined || nodes.ok ? [] : nodes.errors)];
  if (!spec.ok || (nodes !== undefined && !nodes.ok)) {
    for (const e of errors) err(formatSpecError(e));
    return PLAN_EXIT.invalid;
  }
  const input = nodes?.ok === true ? { nodes: nodes.file.nodes, occupants: nodes.file.occupants, namespaceLabels: nodes.file.namespaceLabels } : await liveNodes(opts.etcd ?? '', spec.spec);
  const result = placeInstances({ ...input, instances: clusterInstances(spec.spec) });
  const plan = planJson(spec.spec.name, result);
  if (opts.format === 'json') process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
  else process.stdout.write(`${renderPlan(plan, input.nodes.length)}\n`);
  return result.pending.length === 0 ? PLAN_EXIT.placed : PLAN_EXIT.pending;
}

/** The registered nodes and what other clusters run on them, from one read of the control plane. */
async function liveNodes(etcd: string, spec: ClusterSpec): Promise<Omit<PlacementInput, 'instances'>> {
  const client = await controlClient({ etcd });
  try {
    const snap = await readControl(client);
    const nodes = planNodes(snap).map((n) => ({ name: n.name, labels: n.labels, taints: n.taints, unschedulable: n.unschedulable }));
    return { nodes, occupants: otherOccupants(snap, parseStoredSpecs(snap), spec.name) };
  } finally {
    client.close();
  }
}
