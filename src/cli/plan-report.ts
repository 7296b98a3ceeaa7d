import type { FilterName, PlacementResult, ScorerName } from '../placement/index.js';

/** One node's verdict in `warden plan --format json` (names are part of the public contract). */
export interface PlanNodeJson {
  readonly node: string;
  readonly feasible: boolean;
  /** The filter that rejected the node; only when not feasible. */
  readonly rejectedBy?: FilterName;
  readonly reason: string;
  /** Weighted total; null when the node was filtered out (it is not scored). */
  readonly score: number | null;
  /** Each plugin's normalized score 0..100; empty when the node was filtered out. */
  readonly scores: Partial<Record<ScorerName, number>>;
}

/** `warden plan --format json`. */
export interface PlanJson {
  readonly cluster: string;
  readonly placements: readonly {
    readonly member: string;
    readonly instanceSet: string;
    readonly node: string | null;
    readonly nodes: readonly PlanNodeJson[];
  }[];
  readonly pending: readonly string[];
}

/** The JSON document of a placement result. */
export function planJson(cluster: string, result: PlacementResult): PlanJson {
  return {
    cluster,
    placements: result.placements.map((p) => ({
      member: p.member,
      instanceSet: p.instanceSet,
      node: p.node,
      nodes: p.nodes.map((v): PlanNodeJson =>
        v.feasible
          ? { node: v.node, feasible: true, reason: v.reason, score: v.score, scores: v.scores }
          : { node: v.node, feasible: false, rejectedBy: v.rejectedBy, reason: v.reason, score: null, scores: {} },
      ),
    })),
    pending: result.pending,
  };
}

/**
 * The human report: one row per instance with its node (and score) or Pending, and under each
 * Pending row, for every node, the rule that rejected it in one sentence.
 */
export function renderPlan(plan: PlanJson, nodeCount: number): string {
  const lines = [`cluster ${plan.cluster}: ${plan.placements.length} instance(s) on ${nodeCount} node(s)`];
  const memberWidth = Math.max(6, ...plan.placements.map((p) => p.member.length));
  const setWidth = Math.max(12, ...plan.placements.map((p) => p.instanceSet.length));
  lines.push(`${'MEMBER'.padEnd(memberWidth)}  ${'INSTANCE SET'.padEnd(setWidth)}  NODE`);
  for (const p of plan.placements) {
    const chosen = p.nodes.find((n) => n.node === p.node);
    const where = p.node === null ? 'Pending' : `${p.node} (score ${chosen?.score ?? 0})`;
    lines.push(`${p.member.padEnd(memberWidth)}  ${p.instanceSet.padEnd(setWidth)}  ${where}`);
    if (p.node !== null) continue;
    if (p.nodes.length === 0) lines.push('    no nodes to place on');
    for (const n of p.nodes) lines.push(`    ${n.node}: ${n.rejectedBy ?? 'feasible'}: ${n.reason}`);
  }
  lines.push(plan.pending.length === 0 ? 'all instances placed' : `${plan.pending.length} instance(s) Pending: ${plan.pending.join(', ')}`);
  return lines.join('\n');
}
