import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { placeInstances, selectorMatches } from './index.js';
import type { Affinity, InstanceToPlace, LabelSelector, Labels, Occupant, PlacementNode, Taint, Toleration, TopologySpreadConstraint } from './index.js';

// Properties checked against a deliberately naive oracle (a second, literal reading of the
// required rules), never against the engine itself: every placement satisfies every required rule
// in the snapshot it was made in; an instance is Pending only when no node could take it; and a
// DoNotSchedule constraint shared by a cluster never ends above its maxSkew.

const HOST = 'kubernetes.io/hostname';
const APP = { matchLabels: { app: 'db' }, matchExpressions: [] } satisfies LabelSelector;

interface Placed {
  readonly node: PlacementNode;
  readonly labels: Labels;
  readonly affinity?: Affinity;
  readonly terminating: boolean;
}

interface Scenario {
  readonly nodes: PlacementNode[];
  readonly occupants: Occupant[];
  readonly instances: InstanceToPlace[];
}

const taintArb: fc.Arbitrary<Taint> = fc.record({ key: fc.constantFrom('dedicated', 'gpu'), value: fc.constantFrom('', 'db'), effect: fc.constantFrom('NoSchedule' as const, 'PreferNoSchedule' as const, 'NoExecute' as const) });

const nodesArb: fc.Arbitrary<PlacementNode[]> = fc
  .array(
    fc.record({
      zone: fc.option(fc.constantFrom('a', 'b', 'c'), { nil: undefined }),
      disk: fc.option(fc.constantFrom('ssd', 'hdd'), { nil: undefined }),
      taints: fc.array(taintArb, { maxLength: 2 }),
      unschedulable: fc.integer({ min: 0, max: 5 }).map((x) => x === 0),
    }),
    { minLength: 1, maxLength: 7 },
  )
  .map((specs) =>
    specs.map((s, i) => {
      const name = `node${i + 1}`;
      const labels: Record<string, string> = { [HOST]: name };
      if (s.zone !== undefined) labels['zone'] = s.zone;
      if (s.disk !== undefined) labels['disk'] = s.disk;
      return { name, labels, taints: s.taints, unschedulable: s.unschedulable };
    }),
  );

const clusterArb = fc.record({
  replicas: fc.integer({ min: 1, max: 6 }),
  antiAffinityKey: fc.option(fc.constantFrom(HOST, 'zone'), { nil: undefined }),
  affinityKey: fc.option(fc.constantFrom('zone', HOST), { nil: undefined }),
  spreadKey: fc.option(fc.constantFrom('zone', HOST), { nil: undefined }),
  maxSkew: fc.integer({ min: 1, max: 2 }),
  minDomains: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
  disk: fc.option(fc.constantFrom('ssd', 'hdd'), { nil: undefined }),
  tolerateDedicated: fc.boolean(),
});

const occupantArb = (nodeCount: number): fc.Arbitrary<Occupant[]> =>
  fc.array(
    fc.record({
      node: fc.integer({ min: 1, max: nodeCount }),
      app: fc.constantFrom('web', 'db', 'cache'),
      antiSelf: fc.boolean(),
      terminating: fc.boolean(),
    }),
    { maxLength: 6 },
  ).map((os) =>
    os.map((o, i) => ({
      name: `occ${i}`,
      node: `node${o.node}`,
      namespace: 'default',
      labels: { app: o.app },
      terminating: o.terminating,
      ...(o.antiSelf ? { affinity: { podAntiAffinity: { required: [{ labelSelector: APP, namespaces: [], topologyKey: HOST }], preferred: [] } } } : {}),
    })),
  );

const scenarioArb: fc.Arbitrary<Scenario> = nodesArb.chain((nodes) =>
  fc.record({ cluster: clusterArb, occupants: occupantArb(nodes.length) }).map(({ cluster, occupants }) => {
    const affinity: Affinity = {
      ...(cluster.affinityKey === undefined ? {} : { podAffinity: { required: [{ labelSelector: { matchLabels: { cluster: 'c1' }, matchExpressions: [] }, namespaces: [], topologyKey: cluster.affinityKey }], preferred: [] } }),
      ...(cluster.antiAffinityKey === undefined ? {} : { podAntiAffinity: { required: [{ labelSelector: { matchLabels: { cluster: 'c1' }, matchExpressions: [] }, namespaces: [], topologyKey: cluster.antiAffinityKey }], preferred: [] } }),
    };
    const tolerations: Toleration[] = cluster.tolerateDedicated ? [{ key: 'dedicated', operator: 'Exists', value: '' }] : [];
    const constraints: TopologySpreadConstraint[] =
      cluster.spreadKey === undefined
        ? []
        : [{ maxSkew: cluster.maxSkew, topologyKey: cluster.spreadKey, whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { cluster: 'c1' }, matchExpressions: [] }, ...(cluster.minDomains === undefined ? {} : { minDomains: cluster.minDomains }), matchLabelKeys: [] }];
    const instances = Array.from({ length: cluster.replicas }, (_, i) => ({
      member: `c1-${i + 1}`,
      instanceSet: 'set',
      namespace: 'default',
      labels: { cluster: 'c1', app: 'db' },
      nodeSelector: cluster.disk === undefined ? {} : { disk: cluster.disk },
      affinity,
      tolerations,
      topologySpreadConstraints: constraints,
    }));
    return { nodes, occupants, instances };
  }),
);

// ---- The oracle: each required rule read literally from the Kubernetes documentation.

function tolerated(taint: Taint, tolerations: readonly Toleration[]): boolean {
  return tolerations.some((t) => (t.effect === undefined || t.effect === taint.effect) && (t.key === '' || t.key === taint.key) && (t.operator === 'Exists' || t.value === taint.value));
}

function passesNodeRules(inst: InstanceToPlace, node: PlacementNode): boolean {
  if (node.unschedulable) return false;
  if (node.taints.some((t) => t.effect !== 'PreferNoSchedule' && !tolerated(t, inst.tolerations))) return false;
  return Object.entries(inst.nodeSelector).every(([k, v]) => node.labels[k] === v);
}

function sameDomain(a: PlacementNode, b: PlacementNode, key: string): boolean {
  return a.labels[key] !== undefined && a.labels[key] === b.labels[key];
}

/** Why `node` breaks a required rule for `inst` given what is placed, or undefined. */
function violation(inst: InstanceToPlace, node: PlacementNode, placed: readonly Placed[], nodes: readonly PlacementNode[]): string | undefined {
  if (!passesNodeRules(inst, node)) return 'node rules';
  for (const t of inst.affinity?.podAntiAffinity?.required ?? []) {
    if (placed.some((p) => sameDomain(p.node, node, t.topologyKey) && selectorMatches(t.labelSelector, p.labels))) return 'anti-affinity';
  }
  for (const p of placed) {
    for (const t of p.affinity?.podAntiAffinity?.required ?? []) {
      if (sameDomain(p.node, node, t.topologyKey) && selectorMatches(t.labelSelector, inst.labels)) return 'existing anti-affinity';
    }
  }
  const affinityTerms = inst.affinity?.podAffinity?.required ?? [];
  if (affinityTerms.length > 0) {
    if (affinityTerms.some((t) => node.labels[t.topologyKey] === undefined)) return 'affinity key';
    const satisfied = affinityTerms.every((t) => placed.some((p) => sameDomain(p.node, node, t.topologyKey) && affinityTerms.every((u) => selectorMatches(u.labelSelector, p.labels))));
    const anyMatching = placed.some((p) => p.node.labels[affinityTerms[0]?.topologyKey ?? ''] !== undefined && affinityTerms.every((u) => selectorMatches(u.labelSelector, p.labels)));
    const selfMatch = affinityTerms.every((t) => selectorMatches(t.labelSelector, inst.labels));
    if (!satisfied && !(anyMatching === false && selfMatch)) return 'affinity';
  }
  for (const c of inst.topologySpreadConstraints) {
    if (c.whenUnsatisfiable !== 'DoNotSchedule') continue;
    const value = node.labels[c.topologyKey];
    if (value === undefined) return 'spread key';
    const eligible = nodes.filter((x) => x.labels[c.topologyKey] !== undefined && Object.entries(inst.nodeSelector).every(([k, v]) => x.labels[k] === v));
    const domains = new Map<string, number>();
    for (const x of eligible) domains.set(x.labels[c.topologyKey] ?? '', 0);
    for (const p of placed) {
      const v = p.node.labels[c.topologyKey];
      if (!p.terminating && v !== undefined && domains.has(v) && eligible.includes(p.node) && selectorMatches(c.labelSelector, p.labels)) domains.set(v, (domains.get(v) ?? 0) + 1);
    }
    const min = domains.size < (c.minDomains ?? 1) ? 0 : Math.min(...domains.values());
    const skew = (domains.get(value) ?? 0) + (selectorMatches(c.labelSelector, inst.labels) ? 1 : 0) - min;
    if (skew > c.maxSkew) return `skew ${skew}`;
  }
  return undefined;
}

function replay(s: Scenario, check: (inst: InstanceToPlace, chosen: PlacementNode | undefined, placed: readonly Placed[]) => void): Placed[] {
  const byName = new Map(s.nodes.map((x) => [x.name, x]));
  const placed: Placed[] = s.occupants.flatMap((o) => {
    const node = byName.get(o.node);
    return node === undefined ? [] : [{ node, labels: o.labels, ...(o.affinity === undefined ? {} : { affinity: o.affinity }), terminating: o.terminating }];
  });
  const result = placeInstances(s);
  s.instances.forEach((inst, i) => {
    const name = result.placements[i]?.node;
    const chosen = name === null || name === undefined ? undefined : byName.get(name);
    check(inst, chosen, placed);
    if (chosen !== undefined) placed.push({ node: chosen, labels: inst.labels, ...(inst.affinity === undefined ? {} : { affinity: inst.affinity }), terminating: false });
  });
  return placed;
}

describe('placement properties', () => {
  it('no placement ever violates a required rule in the snapshot it was made in', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        replay(s, (inst, chosen, placed) => {
          if (chosen !== undefined) assert.equal(violation(inst, chosen, placed, s.nodes), undefined, `${inst.member} on ${chosen.name}`);
        });
      }),
      { numRuns: 400 },
    );
  });

  it('an instance is Pending only when no node could take it', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        replay(s, (inst, chosen, placed) => {
          if (chosen !== undefined) return;
          const open = s.nodes.filter((x) => violation(inst, x, placed, s.nodes) === undefined).map((x) => x.name);
          assert.deepEqual(open, [], `${inst.member} Pending although ${open.join(', ')} passed every required rule`);
        });
      }),
      { numRuns: 400 },
    );
  });

  it('a DoNotSchedule constraint the whole cluster shares never ends above maxSkew', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const c = s.instances[0]?.topologySpreadConstraints[0];
        const first = s.instances[0];
        if (c === undefined || first === undefined || (c.minDomains ?? 1) > 1) return;
        const placed = replay(s, () => undefined);
        const eligible = s.nodes.filter((x) => x.labels[c.topologyKey] !== undefined && Object.entries(first.nodeSelector).every(([k, v]) => x.labels[k] === v));
        const domains = new Map<string, number>();
        for (const x of eligible) domains.set(x.labels[c.topologyKey] ?? '', 0);
        for (const p of placed) {
          const v = p.node.labels[c.topologyKey];
          if (!p.terminating && v !== undefined && eligible.includes(p.node) && selectorMatches(c.labelSelector, p.labels)) domains.set(v, (domains.get(v) ?? 0) + 1);
        }
        if (domains.size === 0) return;
        const counts = [...domains.values()];
        assert.ok(Math.max(...counts) - Math.min(...counts) <= c.maxSkew, `domains ${JSON.stringify(Object.fromEntries(domains))} exceed maxSkew ${c.maxSkew}`);
      }),
      { numRuns: 400 },
    );
  });
});
