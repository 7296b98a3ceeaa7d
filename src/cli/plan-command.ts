import { clusterInstances, placeInstances } from '../placement/index.js';
import { formatSpecError, loadClusterSpec, loadNodesFile } from '../spec/index.js';
import { planJson, renderPlan } from './plan-report.js';

/** Exit codes of `warden plan`: every instance placed, some Pending, invalid input. */
export const PLAN_EXIT = { placed: 0, pending: 3, invalid: 2 } as const;

/** `warden plan`: places the spec's instances on the nodes of a nodes file, offline, and explains each decision. */
export async function runPlan(opts: { file: string; nodes?: string; format: string }): Promise<number> {
  const err = (s: string): void => void process.stderr.write(`${s}\n`);
  if (opts.nodes === undefined) {
    err('warden plan: --nodes <nodes.yaml> is required (the runtime does not register nodes yet)');
    return PLAN_EXIT.invalid;
  }
  const [spec, nodes] = await Promise.all([loadClusterSpec(opts.file), loadNodesFile(opts.nodes)]);
  const errors = [...(spec.ok ? [] : spec.errors), ...(nodes.ok ? [] : nodes.errors)];
  if (!spec.ok || !nodes.ok) {
    for (const e of errors) err(formatSpecError(e));
    return PLAN_EXIT.invalid;
  }
  const result = placeInstances({
    nodes: nodes.file.nodes,
    occupants: nodes.file.occupants,
    namespaceLabels: nodes.file.namespaceLabels,
    instances: clusterInstances(spec.spec),
  });
  const plan = planJson(spec.spec.name, result);
  if (opts.format === 'json') process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
  else process.stdout.write(`${renderPlan(plan, nodes.file.nodes.length)}\n`);
  return result.pending.length === 0 ? PLAN_EXIT.placed : PLAN_EXIT.pending;
}
