import type { Affinity, Labels, Occupant, PlacementNode, Taint } from '../placement/index.js';
import { dnsLabelProblem } from './dns-label.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { SpecReader } from './spec-reader.js';
import { hasKey, readAffinity, readLabels, readStringValue, readTaints } from './scheduling-reader.js';
import { parseYamlTree } from './yaml-tree.js';
import type { YamlValue } from './yaml-tree.js';

/** The hosts `warden plan` places on offline, and what already runs on them. */
export interface NodesFile {
  readonly nodes: readonly PlacementNode[];
  readonly occupants: readonly Occupant[];
  /** Labels per namespace, for namespaceSelector. */
  readonly namespaceLabels: Readonly<Record<string, Labels>>;
}

export type ParseNodesFileResult =
  | { readonly ok: true; readonly file: NodesFile; readonly notices: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

const HOSTNAME = 'kubernetes.io/hostname';
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Validates a nodes file: `nodes` (name, labels, taints, unschedulable), `occupants` (name, node,
 * namespace, labels, affinity, terminating) and `namespaces` (name, labels). Each node gets
 * `kubernetes.io/hostname: <name>` unless its labels give one. Pure: no I/O.
 */
export function parseNodesFile(text: string, file: string): ParseNodesFileResult {
  const tree = parseYamlTree(text, file);
  if (!tree.ok) return { ok: false, errors: tree.errors };
  const reader = new SpecReader(file);
  reader.notices.push(...tree.warnings);
  const root = tree.root;
  if (root === undefined) {
    reader.error(reader.root({ line: 1, col: 1 }), 'the file is empty; a nodes file needs a list "nodes"');
    return { ok: false, errors: reader.errors };
  }
  const nodes: PlacementNode[] = [];
  const nodeSites = new Map<string, SpecSite>();
  const occupants: { occupant: Occupant; nodeSite: SpecSite }[] = [];
  const namespaceLabels: Record<string, Labels> = {};
  const rootSite = reader.root(root);
  const isMap = reader.mapping(root, rootSite, {
    read: {
      nodes: (v, s) =>
        reader.list(v, s, (item, is) => {
          const n = readNode(reader, item, is);
          if (n === undefined) return;
          if (nodeSites.has(n.name)) reader.error(is, `duplicate node name ${JSON.stringify(n.name)}`);
          nodeSites.set(n.name, is);
          nodes.push(n);
        }),
      occupants: (v, s) =>
        reader.list(v, s, (item, is) => {
          const o = readOccupant(reader, item, is);
          if (o !== undefined) occupants.push(o);
        }),
      namespaces: (v, s) =>
        reader.list(v, s, (item, is) => {
          let name: string | undefined;
          let labels: Labels = {};
          reader.mapping(item, is, {
            read: {
              name: (nv, ns) => (name = readName(reader, nv, ns, dnsLabelProblem)),
              labels: (lv, ls) => (labels = readLabels(reader, lv, ls) ?? {}),
            },
          });
          if (!hasKey(item, 'name')) reader.missing({ ...is, field: `${is.field}.name` }, 'required: the namespace name');
          if (name !== undefined) namespaceLabels[name] = labels;
        }),
    },
  });
  if (isMap && !hasKey(root, 'nodes')) reader.missing({ ...rootSite, field: 'nodes' }, 'required: the list of nodes, e.g. "nodes: [{ name: node1, labels: { topology.kubernetes.io/zone: a } }]"');
  for (const { occupant, nodeSite } of occupants) {
    if (!nodeSites.has(occupant.node)) reader.error(nodeSite, `node ${JSON.stringify(occupant.node)} is not in the list of nodes`);
  }
  if (reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, file: { nodes, occupants: occupants.map((o) => o.occupant), namespaceLabels }, notices: sortSpecErrors(reader.notices) };
}

function nodeNameProblem(name: string): string | undefined {
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) return `node name ${JSON.stringify(name)}: must be a lowercase DNS subdomain (letters, digits, - and .)`;
  return undefined;
}

function readName(reader: SpecReader, value: YamlValue, site: SpecSite, problemOf: (n: string) => string | undefined): string | undefined {
  const n = readStringValue(reader, value, site);
  if (n === undefined) return undefined;
  const problem = problemOf(n);
  return problem === undefined ? n : reader.error(site, problem);
}

function readNode(reader: SpecReader, item: YamlValue, site: SpecSite): PlacementNode | undefined {
  let name: string | undefined;
  let labels: Labels = {};
  let taints: Taint[] = [];
  let unschedulable = false;
  const before = reader.errors.length;
  reader.mapping(item, site, {
    read: {
      name: (v, s) => (name = readName(reader, v, s, nodeNameProblem)),
      labels: (v, s) => (labels = readLabels(reader, v, s) ?? {}),
      taints: (v, s) => (taints = readTaints(reader, v, s) ?? []),
      unschedulable: (v, s) => (unschedulable = reader.boolean(v, s) ?? false),
    },
  });
  if (!hasKey(item, 'name')) reader.missing({ ...site, field: `${site.field}.name` }, 'required: the node name');
  if (name === undefined || reader.errors.length > before) return undefined;
  return { name, labels: Object.hasOwn(labels, HOSTNAME) ? labels : { ...labels, [HOSTNAME]: name }, taints, unschedulable };
}

function readOccupant(reader: SpecReader, item: YamlValue, site: SpecSite): { occupant: Occupant; nodeSite: SpecSite } | undefined {
  let name: string | undefined;
  let node: string | undefined;
  let nodeSite: SpecSite = site;
  let namespace = 'default';
  let labels: Labels = {};
  let affinity: Affinity | undefined;
  let terminating = false;
  const before = reader.errors.length;
  reader.mapping(item, site, {
    read: {
      name: (v, s) => (name = readStringValue(reader, v, s)),
      node: (v, s) => {
        nodeSite = s;
        node = readName(reader, v, s, nodeNameProblem);
      },
      namespace: (v, s) => (namespace = readName(reader, v, s, dnsLabelProblem) ?? namespace),
      labels: (v, s) => (labels = readLabels(reader, v, s) ?? {}),
      affinity: (v, s) => (affinity = readAffinity(reader, v, s)),
      terminating: (v, s) => (terminating = reader.boolean(v, s) ?? false),
    },
  });
  if (!hasKey(item, 'name')) reader.missing({ ...site, field: `${site.field}.name` }, 'required: a name for reasons to refer to');
  if (!hasKey(item, 'node')) reader.missing({ ...site, field: `${site.field}.node` }, 'required: the node it runs on');
  if (name === undefined || node === undefined || reader.errors.length > before) return undefined;
  return { occupant: { name, node, namespace, labels, ...(affinity === undefined ? {} : { affinity }), terminating }, nodeSite };
}

