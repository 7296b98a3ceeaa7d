import type { LabelSelector, LabelSelectorRequirement, Labels, NodeSelectorRequirement, NodeSelectorTerm, PlacementNode } from './types.js';

/** The label selector that selects everything (`{}`). */
export const EVERYTHING: LabelSelector = { matchLabels: {}, matchExpressions: [] };

/** True when the selector has no requirement at all (kube's `selector.Empty()`). */
export function isEmptySelector(s: LabelSelector): boolean {
  return Object.keys(s.matchLabels).length === 0 && s.matchExpressions.length === 0;
}

/** Does `labels` satisfy the selector? An undefined selector selects nothing, `{}` everything. */
export function selectorMatches(s: LabelSelector | undefined, labels: Labels): boolean {
  if (s === undefined) return false;
  for (const k in s.matchLabels) if (Object.hasOwn(s.matchLabels, k) && labelOf(labels, k) !== s.matchLabels[k]) return false;
  for (const r of s.matchExpressions) if (!requirementMatches(r, labels)) return false;
  return true;
}

function requirementMatches(r: LabelSelectorRequirement | NodeSelectorRequirement, labels: Labels): boolean {
  const v = labelOf(labels, r.key);
  switch (r.operator) {
    case 'In':
      return v !== undefined && r.values.includes(v);
    case 'NotIn':
      // A missing key is "not in" any set: NotIn and DoesNotExist match nodes without the label.
      return v === undefined || !r.values.includes(v);
    case 'Exists':
      return v !== undefined;
    case 'DoesNotExist':
      return v === undefined;
    case 'Gt':
    case 'Lt': {
      const bound = parseInteger(r.values[0]);
      const actual = parseInteger(v);
      if (bound === undefined || actual === undefined) return false;
      return r.operator === 'Gt' ? actual > bound : actual < bound;
    }
  }
}

/** Kubernetes parses Gt/Lt operands as base-10 64-bit integers; anything else never matches. */
export function parseInteger(s: string | undefined): number | undefined {
  if (s === undefined || !/^[+-]?\d+$/.test(s)) return undefined;
  return Number(s);
}

/** One node selector term: an empty term (no expressions, no fields) matches no node. */
export function termMatches(term: NodeSelectorTerm, node: PlacementNode): boolean {
  if (term.matchExpressions.length === 0 && term.matchFields.length === 0) return false;
  for (const r of term.matchExpressions) if (!requirementMatches(r, node.labels)) return false;
  for (const r of term.matchFields) if (!requirementMatches({ ...r, key: 'metadata.name' }, { 'metadata.name': node.name })) return false;
  return true;
}

/** The selector plus `key In (value)` for each matchLabelKeys key the instance carries. */
export function withMatchLabelKeys(s: LabelSelector | undefined, keys: readonly string[], labels: Labels): LabelSelector | undefined {
  if (s === undefined || keys.length === 0) return s;
  const extra: Record<string, string> = {};
  for (const k of keys) {
    const v = labelOf(labels, k);
    if (v !== undefined) extra[k] = v;
  }
  if (Object.keys(extra).length === 0) return s;
  return { matchLabels: { ...s.matchLabels, ...extra }, matchExpressions: s.matchExpressions };
}

/** Short text of a selector for reasons: `app=web,tier In (a,b)`. */
export function describeSelector(s: LabelSelector | undefined): string {
  if (s === undefined) return '<nothing>';
  const parts = [
    ...Object.entries(s.matchLabels).map(([k, v]) => `${k}=${v}`),
    ...s.matchExpressions.map(describeRequirement),
  ];
  return parts.length === 0 ? '<everything>' : parts.join(',');
}

export function describeRequirement(r: LabelSelectorRequirement | NodeSelectorRequirement): string {
  switch (r.operator) {
    case 'Exists':
      return r.key;
    case 'DoesNotExist':
      return `!${r.key}`;
    case 'In':
    case 'NotIn':
      return `${r.key} ${r.operator} (${r.values.join(',')})`;
    case 'Gt':
      return `${r.key} > ${r.values[0] ?? ''}`;
    case 'Lt':
      return `${r.key} < ${r.values[0] ?? ''}`;
  }
}

/**
 * The value of a label, if present. Label values are strings, so anything else found under the
 * key (an inherited `constructor` or `__proto__`: label keys are user data) counts as absent.
 */
export function labelOf(labels: Labels, key: string): string | undefined {
  const v: unknown = labels[key];
  return typeof v === 'string' ? v : undefined;
}
