import { describeRequirement, labelOf, termMatches } from './selectors.js';
import type { InstanceToPlace, PlacementNode, Taint, Toleration } from './types.js';

// The rules that depend on one node alone (taints, node selector, node affinity) and
// kube-scheduler's default score normalization: no snapshot, no other instance involved.

const MAX_NODE_SCORE = 100;

/** nodeSelector and required node affinity; undefined when the node passes. */
export function nodeAffinityRejection(inst: InstanceToPlace, node: PlacementNode): string | undefined {
  for (const [k, v] of Object.entries(inst.nodeSelector)) {
    const actual = labelOf(node.labels, k);
    if (actual !== v) return `nodeSelector ${k}=${v} does not match (${actual === undefined ? `the node has no ${k}` : `the node has ${k}=${actual}`})`;
  }
  const required = inst.affinity?.nodeAffinity?.required;
  if (required === undefined) return undefined;
  if (required.some((t) => termMatches(t, node))) return undefined;
  if (required.length === 0) return 'required node affinity lists no terms, so no node matches';
  const terms = required.map((t) => {
    const parts = [...t.matchExpressions.map(describeRequirement), ...t.matchFields.map((r) => describeRequirement({ ...r, key: 'metadata.name' }))];
    return parts.length === 0 ? '(empty term)' : parts.join(' and ');
  });
  return `matches none of the required node affinity terms: ${terms.join(' or ')}`;
}

/** NodeAffinity's raw score: the summed weights of the preferred terms the node matches. */
export function preferredNodeAffinityScore(inst: InstanceToPlace, node: PlacementNode): number {
  let s = 0;
  for (const p of inst.affinity?.nodeAffinity?.preferred ?? []) if (termMatches(p.preference, node)) s += p.weight;
  return s;
}

/** Taints the TaintToleration filter enforces (PreferNoSchedule only lowers the score). */
export function isDoNotScheduleTaint(t: Taint): boolean {
  return t.effect === 'NoSchedule' || t.effect === 'NoExecute';
}

/** The first taint passing `consider` that no toleration tolerates. */
export function untoleratedTaint(taints: readonly Taint[], tolerations: readonly Toleration[], consider: (t: Taint) => boolean): Taint | undefined {
  return taints.find((t) => consider(t) && !tolerates(tolerations, t));
}

/** Does any of the tolerations tolerate the taint? */
export function tolerates(tolerations: readonly Toleration[], taint: Taint): boolean {
  return tolerations.some((tol) => toleratesTaint(tol, taint));
}

/** kube's Toleration.ToleratesTaint: effect and key (empty matches all), then Equal or Exists. */
export function toleratesTaint(tol: Toleration, taint: Taint): boolean {
  if (tol.effect !== undefined && tol.effect !== taint.effect) return false;
  if (tol.key !== '' && tol.key !== taint.key) return false;
  switch (tol.operator) {
    case 'Exists':
      return true;
    case 'Equal':
      return tol.value === taint.value;
  }
}

/** TaintToleration's raw score: PreferNoSchedule taints not tolerated (by tolerations with no effect or PreferNoSchedule). */
export function intolerablePreferNoSchedule(taints: readonly Taint[], tolerations: readonly Toleration[]): number {
  const relevant = tolerations.filter((t) => t.effect === undefined || t.effect === 'PreferNoSchedule');
  return taints.filter((t) => t.effect === 'PreferNoSchedule' && !tolerates(relevant, t)).length;
}

/** kube-scheduler's DefaultNormalizeScore: scale to 0..100 by the maximum (integer), optionally reversed. */
export function defaultNormalize(raw: readonly number[], reverse: boolean): number[] {
  const max = raw.reduce((m, s) => Math.max(m, s), 0);
  if (max === 0) return raw.map(() => (reverse ? MAX_NODE_SCORE : 0));
  return raw.map((s) => {
    const scaled = Math.trunc((MAX_NODE_SCORE * s) / max);
    return reverse ? MAX_NODE_SCORE - scaled : scaled;
  });
}

/** `key=value:Effect`, as kubectl prints a taint. */
export function describeTaint(t: Taint): string {
  return `${t.key}${t.value === '' ? '' : `=${t.value}`}:${t.effect}`;
}
