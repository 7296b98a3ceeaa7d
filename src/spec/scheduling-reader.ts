import {
  LABEL_SELECTOR_OPERATORS,
  NODE_INCLUSION_POLICIES,
  NODE_SELECTOR_OPERATORS,
  TAINT_EFFECTS,
  TOLERATION_OPERATORS,
  WHEN_UNSATISFIABLE,
} from '../placement/index.js';
import type {
  Affinity,
  LabelSelector,
  LabelSelectorRequirement,
  Labels,
  NodeAffinity,
  NodeSelectorRequirement,
  NodeSelectorTerm,
  PodAffinity,
  PodAffinityTerm,
  PreferredSchedulingTerm,
  Taint,
  Toleration,
  TopologySpreadConstraint,
  WeightedPodAffinityTerm,
} from '../placement/index.js';
import type { SpecSite } from './spec-error.js';
import { childSite, describeValue } from './spec-reader.js';
import type { SpecReader } from './spec-reader.js';
import type { YamlValue } from './yaml-tree.js';

// Readers for the Kubernetes scheduling fields (affinity, tolerations, topologySpreadConstraints,
// labels, taints) with the API server's validation, so that a manifest Kubernetes would reject is
// rejected here with file:line:col and the field, and one it accepts means the same thing.

const REQUIRED = 'requiredDuringSchedulingIgnoredDuringExecution';
const PREFERRED = 'preferredDuringSchedulingIgnoredDuringExecution';
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a Kubernetes label key (`[prefix/]name`), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix === '' || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key ${JSON.stringify(key)}: the prefix must be a lowercase DNS subdomain`;
  }
  if (name === '' || name.length > 63 || !NAME_PART.test(name)) {
    return `label key ${JSON.stringify(key)}: the name must be 1 to 63 letters, digits, -, _ or ., starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Why `value` is not a Kubernetes label value, or undefined (the empty value is valid). */
export function labelValueProblem(value: string): string | undefined {
  if (value === '' || (value.length <= 63 && NAME_PART.test(value))) return undefined;
  return `label value ${JSON.stringify(value)}: must be at most 63 letters, digits, -, _ or ., starting and ending with a letter or digit`;
}

/** A string scalar; numbers and booleans are type errors as in the Kubernetes API (quote them). */
export function readStringValue(reader: SpecReader, value: YamlValue, site: SpecSite, allowEmpty = false): string | undefined {
  if (value.kind === 'scalar' && typeof value.value === 'string' && (allowEmpty || value.value !== '')) return value.value;
  if (allowEmpty && value.kind === 'scalar' && value.value === null) return '';
  const hint = value.kind === 'scalar' && (typeof value.value === 'number' || typeof value.value === 'boolean') ? '; quote it' : '';
  return reader.error(site, `must be a ${allowEmpty ? '' : 'non-empty '}string (got ${describeValue(value)})${hint}`);
}

export function readStringList(reader: SpecReader, value: YamlValue, site: SpecSite): string[] | undefined {
  const out: string[] = [];
  let ok = true;
  const isList = reader.list(value, site, (item, s) => {
    const v = readStringValue(reader, item, s);
    if (v === undefined) ok = false;
    else out.push(v);
  });
  return isList && ok ? out : undefined;
}

/** A label map (`key: value`), each key and value checked. */
export function readLabels(reader: SpecReader, value: YamlValue, site: SpecSite): Labels | undefined {
  if (value.kind === 'scalar' && value.value === null) return {};
  if (value.kind !== 'map') return reader.error(site, `must be a mapping of label keys to values (got ${describeValue(value)})`);
  const labels: Record<string, string> = {};
  let ok = true;
  for (const entry of value.entries) {
    const s = childSite(site, entry.key, entry.keyPos);
    const keyProblem = labelKeyProblem(entry.key);
    if (keyProblem !== undefined) {
      reader.error(s, keyProblem);
      ok = false;
      continue;
    }
    const v = readStringValue(reader, entry.value, s, true);
    const valueProblem = v === undefined ? undefined : labelValueProblem(v);
    if (valueProblem !== undefined) reader.error(s, valueProblem);
    if (v === undefined || valueProblem !== undefined) ok = false;
    else labels[entry.key] = v;
  }
  return ok ? labels : undefined;
}

function readLabelKey(reader: SpecReader, value: YamlValue, site: SpecSite): string | undefined {
  const key = readStringValue(reader, value, site);
  if (key === undefined) return undefined;
  const problem = labelKeyProblem(key);
  return problem === undefined ? key : reader.error(site, problem);
}

/** Operands of one requirement, checked against its operator as the API server does. */
function checkValues(reader: SpecReader, operator: string, values: readonly string[] | undefined, site: SpecSite, valuesSite: SpecSite | undefined): boolean {
  const given = values ?? [];
  switch (operator) {
    case 'In':
    case 'NotIn':
      if (given.length === 0) return reader.error(valuesSite ?? site, `operator ${operator} needs at least one value`) ?? false;
      return true;
    case 'Exists':
    case 'DoesNotExist':
      if (given.length > 0) return reader.error(valuesSite ?? site, `operator ${operator} takes no values`) ?? false;
      return true;
    case 'Gt':
    case 'Lt':
      if (given.length !== 1 || !/^[+-]?\d+$/.test(given[0] ?? '')) {
        return reader.error(valuesSite ?? site, `operator ${operator} needs exactly one integer value, e.g. ["3"]`) ?? false;
      }
      return true;
    default:
      return false;
  }
}

type Requirement<Op extends string> = { key: string; operator: Op; values: string[] };

function readRequirement<Op extends string>(reader: SpecReader, value: YamlValue, site: SpecSite, operators: readonly Op[], labelKey: boolean): Requirement<Op> | undefined {
  let key: string | undefined;
  let operator: Op | undefined;
  let values: string[] | undefined;
  let valuesSite: SpecSite | undefined;
  let ok = true;
  const before = reader.errors.length;
  const isMap = reader.mapping(value, site, {
    read: {
      key: (v, s) => (key = labelKey ? readLabelKey(reader, v, s) : readStringValue(reader, v, s)),
      operator: (v, s) => (operator = reader.oneOf(v, s, operators)),
      values: (v, s) => {
        valuesSite = s;
        values = readStringList(reader, v, s);
        if (values === undefined) ok = false;
      },
    },
  });
  if (!isMap) return undefined;
  if (!hasKey(value, 'key')) reader.missing({ ...site, field: `${site.field}.key` }, 'required: the label key');
  if (!hasKey(value, 'operator')) reader.missing({ ...site, field: `${site.field}.operator` }, `required: one of ${operators.join(', ')}`);
  if (key === undefined || operator === undefined || !ok || reader.errors.length > before) return undefined;
  if (!checkValues(reader, operator, values, site, valuesSite)) return undefined;
  return { key, operator, values: values ?? [] };
}

function readRequirements<Op extends string>(reader: SpecReader, value: YamlValue, site: SpecSite, operators: readonly Op[], labelKey: boolean): Requirement<Op>[] | undefined {
  const out: Requirement<Op>[] = [];
  let ok = true;
  const isList = reader.list(value, site, (item, s) => {
    const r = readRequirement(reader, item, s, operators, labelKey);
    if (r === undefined) ok = false;
    else out.push(r);
  });
  return isList && ok ? out : undefined;
}

/** A metav1.LabelSelector. */
export function readLabelSelector(reader: SpecReader, value: YamlValue, site: SpecSite): LabelSelector | undefined {
  let matchLabels: Labels = {};
  let matchExpressions: LabelSelectorRequirement[] = [];
  const before = reader.errors.length;
  const isMap = reader.mapping(value, site, {
    read: {
      matchLabels: (v, s) => (matchLabels = readLabels(reader, v, s) ?? {}),
      matchExpressions: (v, s) => (matchExpressions = readRequirements(reader, v, s, LABEL_SELECTOR_OPERATORS, true) ?? []),
    },
    hints: { matchLabel: 'matchLabels', matchExpression: 'matchExpressions', selector: 'matchLabels' },
  });
  if (!isMap || reader.errors.length > before) return undefined;
  return { matchLabels, matchExpressions };
}

function readNodeSelectorTerm(reader: SpecReader, value: YamlValue, site: SpecSite): NodeSelectorTerm | undefined {
  let matchExpressions: NodeSelectorRequirement[] = [];
  let matchFields: NodeSelectorRequirement[] = [];
  const before = reader.errors.length;
  const isMap = reader.mapping(value, site, {
    read: {
      matchExpressions: (v, s) => (matchExpressions = readRequirements(reader, v, s, NODE_SELECTOR_OPERATORS, true) ?? []),
      matchFields: (v, s) => {
        matchFields = readRequirements(reader, v, s, NODE_SELECTOR_OPERATORS, false) ?? [];
        // The scheduler supports one field selector: the node's name, with In or NotIn and one value.
        matchFields.forEach((f, i) => {
          const fs = { ...s, field: `${s.field}[${i}]` };
          if (f.key !== 'metadata.name') reader.error(fs, `matchFields supports only the key metadata.name (got ${JSON.stringify(f.key)})`);
          else if ((f.operator !== 'In' && f.operator !== 'NotIn') || f.values.length !== 1) reader.error(fs, 'matchFields on metadata.name needs operator In or NotIn with exactly one value');
        });
      },
    },
  });
  if (!isMap || reader.errors.length > before) return undefined;
  return { matchExpressions, matchFields };
}

function readNodeAffinity(reader: SpecReader, value: YamlValue, site: SpecSite): NodeAffinity | undefined {
  let required: NodeSelectorTerm[] | undefined;
  const preferred: PreferredSchedulingTerm[] = [];
  const before = reader.errors.length;
  reader.mapping(value, site, {
    read: {
      [REQUIRED]: (v, s) => {
        reader.mapping(v, s, {
          read: {
            nodeSelectorTerms: (tv, ts) => {
              const terms: NodeSelectorTerm[] = [];
              reader.list(tv, ts, (item, is) => {
                const t = readNodeSelectorTerm(reader, item, is);
                if (t !== undefined) terms.push(t);
              });
              if (tv.kind === 'list' && tv.items.length === 0) reader.error(ts, 'must list at least one node selector term');
              required = terms;
            },
          },
        });
        if (!hasKey(v, 'nodeSelectorTerms')) reader.missing({ ...s, field: `${s.field}.nodeSelectorTerms` }, 'required: at least one node selector term');
      },
      [PREFERRED]: (v, s) => {
        reader.list(v, s, (item, is) => {
          let weight: number | undefined;
          let preference: NodeSelectorTerm | undefined;
          reader.mapping(item, is, {
            read: {
              weight: (wv, ws) => (weight = reader.number(wv, ws, { integer: true, min: 1, max: 100 })),
              preference: (pv, ps) => (preference = readNodeSelectorTerm(reader, pv, ps)),
            },
          });
          if (!hasKey(item, 'weight')) reader.missing({ ...is, field: `${is.field}.weight` }, 'required: an integer from 1 to 100');
          if (!hasKey(item, 'preference')) reader.missing({ ...is, field: `${is.field}.preference` }, 'required: a node selector term');
          if (weight !== undefined && preference !== undefined) preferred.push({ weight, preference });
        });
      },
    },
  });
  if (reader.errors.length > before) return undefined;
  return { ...(required === undefined ? {} : { required }), preferred };
}

function readPodAffinityTerm(reader: SpecReader, value: YamlValue, site: SpecSite): PodAffinityTerm | undefined {
  let labelSelector: LabelSelector | undefined;
  let namespaceSelector: LabelSelector | undefined;
  let namespaces: string[] = [];
  let topologyKey: string | undefined;
  const before = reader.errors.length;
  const isMap = reader.mapping(value, site, {
    read: {
      labelSelector: (v, s) => (labelSelector = readLabelSelector(reader, v, s)),
      namespaceSelector: (v, s) => (namespaceSelector = readLabelSelector(reader, v, s)),
      namespaces: (v, s) => (namespaces = readStringList(reader, v, s) ?? []),
      topologyKey: (v, s) => (topologyKey = readLabelKey(reader, v, s)),
    },
  });
  if (!isMap) return undefined;
  if (!hasKey(value, 'topologyKey')) reader.missing({ ...site, field: `${site.field}.topologyKey` }, 'required: the node label that defines the topology domain, e.g. kubernetes.io/hostname');
  if (topologyKey === undefined || reader.errors.length > before) return undefined;
  return {
    ...(labelSelector === undefined ? {} : { labelSelector }),
    namespaces,
    ...(namespaceSelector === undefined ? {} : { namespaceSelector }),
    topologyKey,
  };
}

function readPodAffinity(reader: SpecReader, value: YamlValue, site: SpecSite): PodAffinity | undefined {
  const required: PodAffinityTerm[] = [];
  const preferred: WeightedPodAffinityTerm[] = [];
  const before = reader.errors.length;
  reader.mapping(value, site, {
    read: {
      [REQUIRED]: (v, s) =>
        reader.list(v, s, (item, is) => {
          const t = readPodAffinityTerm(reader, item, is);
          if (t !== undefined) required.push(t);
        }),
      [PREFERRED]: (v, s) =>
        reader.list(v, s, (item, is) => {
          let weight: number | undefined;
          let term: PodAffinityTerm | undefined;
          reader.mapping(item, is, {
            read: {
              weight: (wv, ws) => (weight = reader.number(wv, ws, { integer: true, min: 1, max: 100 })),
              podAffinityTerm: (tv, ts) => (term = readPodAffinityTerm(reader, tv, ts)),
            },
          });
          if (!hasKey(item, 'weight')) reader.missing({ ...is, field: `${is.field}.weight` }, 'required: an integer from 1 to 100');
          if (!hasKey(item, 'podAffinityTerm')) reader.missing({ ...is, field: `${is.field}.podAffinityTerm` }, 'required: the pod affinity term');
          if (weight !== undefined && term !== undefined) preferred.push({ weight, podAffinityTerm: term });
        }),
    },
  });
  if (reader.errors.length > before) return undefined;
  return { required, preferred };
}

/** A core/v1 Affinity: nodeAffinity, podAffinity, podAntiAffinity. */
export function readAffinity(reader: SpecReader, value: YamlValue, site: SpecSite): Affinity | undefined {
  let nodeAffinity: NodeAffinity | undefined;
  let podAffinity: PodAffinity | undefined;
  let podAntiAffinity: PodAffinity | undefined;
  const before = reader.errors.length;
  reader.mapping(value, site, {
    read: {
      nodeAffinity: (v, s) => (nodeAffinity = readNodeAffinity(reader, v, s)),
      podAffinity: (v, s) => (podAffinity = readPodAffinity(reader, v, s)),
      podAntiAffinity: (v, s) => (podAntiAffinity = readPodAffinity(reader, v, s)),
    },
  });
  if (reader.errors.length > before) return undefined;
  return {
    ...(nodeAffinity === undefined ? {} : { nodeAffinity }),
    ...(podAffinity === undefined ? {} : { podAffinity }),
    ...(podAntiAffinity === undefined ? {} : { podAntiAffinity }),
  };
}

/** core/v1 tolerations, validated as the API server does (Exists takes no value; no key needs Exists). */
export function readTolerations(reader: SpecReader, value: YamlValue, site: SpecSite): Toleration[] | undefined {
  const out: Toleration[] = [];
  const before = reader.errors.length;
  reader.list(value, site, (item, is) => {
    let key = '';
    let operator = 'Equal' as Toleration['operator'];
    let val = '';
    let effect: Toleration['effect'];
    let valueSite: SpecSite | undefined;
    const start = reader.errors.length;
    reader.mapping(item, is, {
      read: {
        key: (v, s) => (key = readLabelKey(reader, v, s) ?? ''),
        operator: (v, s) => (operator = reader.oneOf(v, s, TOLERATION_OPERATORS) ?? 'Equal'),
        value: (v, s) => {
          valueSite = s;
          val = readStringValue(reader, v, s, true) ?? '';
        },
        effect: (v, s) => (effect = reader.oneOf(v, s, TAINT_EFFECTS)),
        tolerationSeconds: (v, s) => void reader.number(v, s, { integer: true }),
      },
    });
    if (reader.errors.length > start) return;
    if (operator === 'Exists' && val !== '') {
      reader.error(valueSite ?? is, 'must be empty when operator is Exists');
      return;
    }
    if (key === '' && operator !== 'Exists') {
      reader.error(is, 'a toleration without a key must use operator Exists (it then tolerates every taint)');
      return;
    }
    out.push({ key, operator, value: val, ...(effect === undefined ? {} : { effect }) });
  });
  return reader.errors.length > before ? undefined : out;
}

/** core/v1 topologySpreadConstraints. */
export function readTopologySpreadConstraints(reader: SpecReader, value: YamlValue, site: SpecSite): TopologySpreadConstraint[] | undefined {
  const out: TopologySpreadConstraint[] = [];
  const before = reader.errors.length;
  reader.list(value, site, (item, is) => {
    let maxSkew: number | undefined;
    let topologyKey: string | undefined;
    let whenUnsatisfiable: TopologySpreadConstraint['whenUnsatisfiable'] | undefined;
    let labelSelector: LabelSelector | undefined;
    let minDomains: number | undefined;
    let minDomainsSite: SpecSite | undefined;
    let nodeAffinityPolicy: TopologySpreadConstraint['nodeAffinityPolicy'];
    let nodeTaintsPolicy: TopologySpreadConstraint['nodeTaintsPolicy'];
    let matchLabelKeys: string[] = [];
    let matchLabelKeysSite: SpecSite | undefined;
    const start = reader.errors.length;
    const isMap = reader.mapping(item, is, {
      read: {
        maxSkew: (v, s) => (maxSkew = reader.number(v, s, { integer: true, min: 1 })),
        topologyKey: (v, s) => (topologyKey = readLabelKey(reader, v, s)),
        whenUnsatisfiable: (v, s) => (whenUnsatisfiable = reader.oneOf(v, s, WHEN_UNSATISFIABLE)),
        labelSelector: (v, s) => (labelSelector = readLabelSelector(reader, v, s)),
        minDomains: (v, s) => {
          minDomainsSite = s;
          minDomains = reader.number(v, s, { integer: true, min: 1 });
        },
        nodeAffinityPolicy: (v, s) => (nodeAffinityPolicy = reader.oneOf(v, s, NODE_INCLUSION_POLICIES)),
        nodeTaintsPolicy: (v, s) => (nodeTaintsPolicy = reader.oneOf(v, s, NODE_INCLUSION_POLICIES)),
        matchLabelKeys: (v, s) => {
          matchLabelKeysSite = s;
          matchLabelKeys = readStringList(reader, v, s) ?? [];
          for (const k of matchLabelKeys) {
            const problem = labelKeyProblem(k);
            if (problem !== undefined) reader.error(s, problem);
          }
        },
      },
    });
    if (!isMap) return;
    if (!hasKey(item, 'maxSkew')) reader.missing({ ...is, field: `${is.field}.maxSkew` }, 'required: an integer ≥ 1');
    if (!hasKey(item, 'topologyKey')) reader.missing({ ...is, field: `${is.field}.topologyKey` }, 'required: the node label that defines the topology domain, e.g. topology.kubernetes.io/zone');
    if (!hasKey(item, 'whenUnsatisfiable')) reader.missing({ ...is, field: `${is.field}.whenUnsatisfiable` }, 'required: DoNotSchedule or ScheduleAnyway');
    if (reader.errors.length > start || maxSkew === undefined || topologyKey === undefined || whenUnsatisfiable === undefined) return;
    if (minDomains !== undefined && whenUnsatisfiable !== 'DoNotSchedule') {
      reader.error(minDomainsSite ?? is, 'minDomains can only be set with whenUnsatisfiable: DoNotSchedule');
      return;
    }
    const inSelector = labelSelector === undefined ? [] : [...Object.keys(labelSelector.matchLabels), ...labelSelector.matchExpressions.map((e) => e.key)];
    const clash = matchLabelKeys.find((k) => inSelector.includes(k));
    if (clash !== undefined) {
      reader.error(matchLabelKeysSite ?? is, `${JSON.stringify(clash)} is already in labelSelector; a key cannot be in both`);
      return;
    }
    out.push({
      maxSkew,
      topologyKey,
      whenUnsatisfiable,
      ...(labelSelector === undefined ? {} : { labelSelector }),
      ...(minDomains === undefined ? {} : { minDomains }),
      ...(nodeAffinityPolicy === undefined ? {} : { nodeAffinityPolicy }),
      ...(nodeTaintsPolicy === undefined ? {} : { nodeTaintsPolicy }),
      matchLabelKeys,
    });
  });
  return reader.errors.length > before ? undefined : out;
}

/** Node taints: key (required), value, effect (required). */
export function readTaints(reader: SpecReader, value: YamlValue, site: SpecSite): Taint[] | undefined {
  const out: Taint[] = [];
  const before = reader.errors.length;
  reader.list(value, site, (item, is) => {
    let key: string | undefined;
    let val = '';
    let effect: Taint['effect'] | undefined;
    const start = reader.errors.length;
    const isMap = reader.mapping(item, is, {
      read: {
        key: (v, s) => (key = readLabelKey(reader, v, s)),
        value: (v, s) => (val = readStringValue(reader, v, s, true) ?? ''),
        effect: (v, s) => (effect = reader.oneOf(v, s, TAINT_EFFECTS)),
        timeAdded: () => undefined,
      },
    });
    if (!isMap) return;
    if (!hasKey(item, 'key')) reader.missing({ ...is, field: `${is.field}.key` }, 'required: the taint key');
    if (!hasKey(item, 'effect')) reader.missing({ ...is, field: `${is.field}.effect` }, `required: one of ${TAINT_EFFECTS.join(', ')}`);
    if (reader.errors.length === start && key !== undefined && effect !== undefined) out.push({ key, value: val, effect });
  });
  return reader.errors.length > before ? undefined : out;
}

export function hasKey(value: YamlValue, key: string): boolean {
  return value.kind === 'map' && value.entries.some((e) => e.key === key);
}
