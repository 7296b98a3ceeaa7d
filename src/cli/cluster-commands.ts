import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Option, type Command } from 'commander';
import { sleep } from '../core/deadline.js';
import { WardenError } from '../core/errors.js';
import { assignmentBackupsOf, describeChange, planCluster, type Plan } from '../controller/plan.js';
import { backupsChangeRestarts, backupsFingerprint, CONTROL_PREFIX, nodeKey, nodeSettingsKey, parseControlSnapshot, dataSourceKey, secretsKey, specKey, type AssignmentBackups, type ClusterSecrets, type ControlSnapshot, type NodeSettings, type StoredDataSource, type StoredSpec } from '../controller/records.js';
import { observationOf, parseStoredSpecs, planInputFromSnapshot } from '../controller/snapshot-plan.js';
import { readStateFile } from '../controller/state-file.js';
import { EtcdClient } from '../dcs/etcd-client.js';
import { clusterPrefix, KEYS, parseClusterView } from '../ha/index.js';
import type { SchedulesRecord } from '../backup/index.js';
import { localSecrets } from '../controller/local-nodes.js';
import { readLayout } from '../controller/runtime-layout.js';
import { dataSourceSite, formatSpecError, loadClusterSpec, noticesForController, parseClusterSpec, type ClusterSpec } from '../spec/index.js';
import { readEtcdFiles } from './etcd-files.js';
import { etcdOptionsFromEnv } from './target.js';
import { resolveDataSource, storedDataSource } from './data-source.js';
import { describeTarget } from './recover-to-target.js';

// `warden apply`, `get`, `delete cluster` and `node cordon|uncordon|drain`: they read and write the
// control plane's keys in etcd (docs/architecture.md, "DCS keys"), never a node's files.

interface EtcdOptions {
  etcd?: string;
  dir?: string;
}

const CALL_TIMEOUT_MS = 5_000;
const DEFAULT_NODE_LOST_MS = 30_000;

/** etcd from `--etcd URLS` (credentials from WARDEN_ETCD_* variables) or from `--dir`'s state.json. */
export async function controlClient(o: EtcdOptions): Promise<EtcdClient> {
  if (o.etcd !== undefined) {
    const endpoints = o.etcd.split(',').map((s) => s.trim()).filter(Boolean);
    for (const u of endpoints) if (!/^https?:\/\/[^/]+$/.test(u)) throw new WardenError('config-invalid', `--etcd: not an http(s)://host:port URL: ${u}`);
    return new EtcdClient({ endpoints, defaultTimeoutMs: CALL_TIMEOUT_MS, ...etcdOptionsFromEnv(process.env) });
  }
  const dir = resolve(o.dir ?? '.warden');
  const state = await readStateFile(dir);
  if (state === undefined) throw new WardenError('config-invalid', `give --etcd URLS (no state.json in ${dir})`);
  const a = state.etcdAuth;
  return new EtcdClient({ endpoints: state.etcd, defaultTimeoutMs: CALL_TIMEOUT_MS, ...(a === undefined ? {} : readEtcdFiles({ username: a.username, passwordFile: a.passwordFile })) });
}

export async function readControl(client: EtcdClient): Promise<ControlSnapshot> {
  const raw = await client.range(CONTROL_PREFIX, { timeoutMs: CALL_TIMEOUT_MS });
  return parseControlSnapshot(raw.revision, raw.kvs);
}

function withEtcd(cmd: Command): Command {
  return cmd.option('--etcd <urls>', 'etcd endpoints, comma-separated (credentials: WARDEN_ETCD_USERNAME, WARDEN_ETCD_PASSWORD_FILE)').option('--dir <dir>', 'a `warden up` runtime dir whose etcd to use');
}

const out = (s: string): void => void process.stdout.write(`${s}\n`);
const err = (s: string): void => void process.stderr.write(`${s}\n`);

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/** The plan `warden apply` shows: members per node, what changes, what stays Pending and why. */
export function renderApplyPlan(cluster: string, plan: Plan, current: readonly { kind: string; name: string; node: string }[]): string {
  const lines: string[] = [];
  const where = new Map(current.map((a) => [`${a.kind}/${a.name}`, a.node]));
  for (const c of plan.changes) if (c.kind === 'assign') where.set(`${c.workload}/${c.name}`, c.node);
  for (const c of plan.changes) if (c.kind === 'unassign') where.delete(`${c.workload}/${c.name}`);
  const byNode = new Map<string, string[]>();
  for (const [k, n] of [...where].sort()) byNode.set(n, [...(byNode.get(n) ?? []), k.replace(/^member\//, '').replace(/^router\//, 'router ')]);
  lines.push(`cluster ${cluster}: ${plan.desired.members} member(s), ${plan.desired.routers} router(s)`);
  for (const [n, ws] of [...byNode].sort()) lines.push(`  ${n}: ${ws.join(', ')}`);
  if (plan.changes.length === 0) lines.push('changes: none');
  else for (const c of plan.changes) lines.push(`  ${describeChange(c)}: ${c.reason.message}`);
  for (const p of plan.pending) lines.push(`  Pending ${p.kind} ${p.name}: ${p.reason.message}`);
  for (const w of plan.waiting) lines.push(`  waiting: ${w.message}`);
  return lines.join('\n');
}

/**
 * What a change of spec.backups does to the running members, in one line (undefined: no change);
 * the controller rolls it (docs/architecture.md, "Rolling changes").
 */
export function backupsChangeLine(from: AssignmentBackups | undefined, to: AssignmentBackups | undefined): string | undefined {
  if (backupsFingerprint(from) === backupsFingerprint(to)) return undefined;
  if (!backupsChangeRestarts(from, to)) return 'spec.backups: only pgBackRest options change: every member\'s pgbackrest.conf is rewritten in place, nothing restarts';
  const what = from === undefined ? `archiving turns on (into ${to?.repos.join(', ') ?? ''})` : to === undefined ? 'archiving turns off (the repositories keep what they hold)' : `the repositories change (${from.repos.join(', ')} → ${to.repos.join(', ')})`;
  return `spec.backups: ${what}: each member's agent restarts with the new settings, one at a time — the replicas first, then one switchover, then the former primary`;
}

function newSecrets(): ClusterSecrets {
  const pw = (): string => randomBytes(18).toString('base64url');
  return { superuser: { username: 'postgres', password: pw() }, replication: { username: 'replicator', password: pw() }, restApi: { username: 'warden', password: pw() } };
}

/** `warden apply`: exit 0 stored (or unchanged), 1 not converged within --timeout with --wait, 2 invalid spec (nothing changed). */
export async function runApply(o: EtcdOptions & { file: string; wait: boolean; timeoutSeconds: number; secrets?: ClusterSecrets; dataSource?: StoredDataSource }): Promise<number> {
  const loaded = await loadClusterSpec(o.file);
  if (!loaded.ok) {
    for (const e of loaded.errors) err(formatSpecError(e));
    err('nothing was changed');
    return 2;
  }
  for (const n of noticesForController(loaded.notices)) err(formatSpecError(n));
  const spec = loaded.spec;
  const text = await readFile(o.file, 'utf8');
  const client = await controlClient(o);
  try {
    const snap = await readControl(client);
    let dataSource = o.dataSource;
    // A repository given by its path needs no runtime dir: resolved here (it must be readable from
    // this machine as from the nodes), for a cluster applied for the first time.
    if (spec.dataSource?.kind === 'repository' && dataSource === undefined && !snap.dataSources.has(spec.name) && !snap.specs.has(spec.name)) {
      const resolved = await resolveDataSource({ ...spec, dataSource: spec.dataSource }, { dir: resolve('.'), sourceDir: undefined });
      if (!resolved.ok) {
        for (const e of resolved.errors) err(formatSpecError(e));
        err('nothing was changed');
        return 2;
      }
      const p = resolved.plan;
      out(`data source: stanza ${p.stanza} in the repository at ${p.repoPath} set ${p.setLabel}, recovered to ${describeTarget(p.target)}; this cluster archives into its own repository`);
      dataSource = await storedDataSource(spec.name, p);
    }
    // The members bootstrap from spec.dataSource only with what `warden up --source-dir` resolved
    // and stored (/warden/_datasources/<cluster>): a spec that asks for another cluster's data must
    // not quietly get an empty cluster instead.
    if (spec.dataSource !== undefined && dataSource === undefined && !snap.dataSources.has(spec.name)) {
      err(formatSpecError({ ...dataSourceSite(spec.dataSource), message: spec.dataSource.kind === 'cluster' ? 'a new cluster from another cluster\'s backups is made by `warden up -f FILE --source-dir DIR` (it resolves the source\'s repository and backup set); `warden apply` only re-applies such a cluster' : 'a new cluster from a repository\'s backups is made by `warden up -f FILE` (it resolves the stanza\'s backup set); `warden apply` only re-applies such a cluster' }));
      err('nothing was changed');
      return 2;
    }
    const stored = snap.specs.get(spec.name);
    const storedParsed = stored === undefined ? undefined : parseClusterSpec(stored.text, stored.file);
    const unchanged = storedParsed?.ok === true && isDeepStrictEqual(storedParsed.spec, spec);
    const generation = stored === undefined ? 1 : unchanged ? stored.generation : stored.generation + 1;
    const prefix = clusterPrefix(spec.name);
    const rawView = await client.range(prefix, { timeoutMs: CALL_TIMEOUT_MS });
    const view = parseClusterView(prefix, rawView.revision, rawView.kvs);
    if (stored === undefined && (view.initialize !== undefined || view.members.size > 0)) {
      throw new WardenError('conflict', `cluster ${spec.name} has keys in this etcd but no stored spec: a \`warden up\` cluster, or a deleted one whose members are still being removed (\`warden get clusters\`); nothing was changed`);
    }
    const plan = planCluster(planInputFromSnapshot(snap, parseStoredSpecs(snap), spec, generation, observationOf(view), new Map(), DEFAULT_NODE_LOST_MS));
    out(renderApplyPlan(spec.name, plan, snap.assignments.get(spec.name) ?? []));
    if (storedParsed?.ok === true && !unchanged) {
      const line = backupsChangeLine(assignmentBackupsOf(storedParsed.spec), assignmentBackupsOf(spec));
      if (line !== undefined) out(line);
    }
    if (unchanged) {
      out(`spec unchanged (generation ${generation}): nothing stored`);
    } else {
      // Before the spec: a controller that sees the spec sees its data source in the same snapshot.
      // Put, not create: what this `warden up` resolved replaces one left by an earlier run that
      // stopped before storing its spec.
      if (dataSource !== undefined && stored === undefined) await client.put(dataSourceKey(spec.name), JSON.stringify(dataSource));
      const record: StoredSpec = { cluster: spec.name, generation, text, file: resolve(o.file), uid: stored?.uid ?? randomBytes(8).toString('hex'), appliedAtMs: Date.now() };
      const ok = stored === undefined ? await client.create(specKey(spec.name), JSON.stringify(record)) : await client.compareAndSwap(specKey(spec.name), JSON.stringify(record), stored.modRevision);
      if (!ok) throw new WardenError('conflict', `the stored spec of ${spec.name} changed while this apply ran; nothing was stored — apply again`);
      // Created once: members of one cluster must share them, and an apply must never rotate them under running agents.
      await client.create(secretsKey(spec.name), JSON.stringify(o.secrets ?? newSecrets()));
      out(`stored spec ${spec.name} generation ${generation}`);
      await publishLocalSchedules(client, o, spec);
    }
    if (!o.wait) return 0;
    return await waitConverged(client, spec.name, generation, o.timeoutSeconds * 1000);
  } finally {
    client.close();
  }
}

async function waitConverged(client: EtcdClient, cluster: string, generation: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    // A failed read is retried on the next poll; the deadline bounds the wait.
    const status = (await readControl(client).catch(() => undefined))?.statuses.get(cluster);
    if (status !== undefined && status.generation >= generation) {
      const line = `${status.ready}/${status.desired} members ready, ${status.routers.placed}/${status.routers.desired} routers placed${status.pending.length > 0 ? `, ${status.pending.length} Pending` : ''}`;
      if (line !== last) out(line);
      last = line;
      if (status.ready === status.desired && status.pending.length === 0 && status.inProgress.length === 0 && status.routers.placed === status.routers.desired) return 0;
      // Every member gave up bootstrapping: waiting longer changes nothing, say why now.
      const gaveUp = await bootstrapGaveUp(client, cluster, status.desired);
      if (gaveUp !== undefined) {
        err(`the cluster could not be bootstrapped: ${gaveUp}`);
        err(`see each member's agent.log (\`warden get nodes\` lists where they run); then \`warden delete cluster ${cluster} --confirm ${cluster}\` and apply again`);
        return 1;
      }
    }
    if (Date.now() >= deadline) {
      err(`not converged within ${Math.round(timeoutMs / 1000)} s`);
      for (const p of status?.pending ?? []) err(`  Pending ${p.name}: ${p.reason.message}`);
      for (const r of status?.inProgress ?? []) err(`  in progress: ${r.message}`);
      if (status?.lastError !== null && status?.lastError !== undefined) err(`  last error: ${status.lastError}`);
      // What the node daemons say of the cluster's workloads that do not run (an agent that exits at once, a member a node cannot prepare).
      const snap = await readControl(client).catch(() => undefined);
      for (const line of snap === undefined ? [] : workloadTroubles(snap, cluster)) err(`  ${line}`);
      return 1;
    }
    await sleep(1_000);
  }
}

/** The last reason when the cluster has no `initialize` key and each of its `desired` members gave up bootstrapping; else undefined. */
async function bootstrapGaveUp(client: EtcdClient, cluster: string, desired: number): Promise<string | undefined> {
  const prefix = clusterPrefix(cluster);
  const raw = await client.range(prefix, { timeoutMs: CALL_TIMEOUT_MS }).catch(() => undefined);
  if (raw === undefined) return undefined;
  const view = parseClusterView(prefix, raw.revision, raw.kvs);
  const members = [...view.members.values()];
  if (view.initialize !== undefined || desired === 0 || members.length < desired || !members.every((m) => m.reason?.code === 'bootstrap-gave-up')) return undefined;
  return members[0]?.reason?.message ?? 'bootstrap-gave-up';
}

/** Registers apply, get, delete and the node subcommands (cordon, uncordon, drain) on `program`. */
export function registerClusterCommands(program: Command, node: Command): void {
  withEtcd(program.command('apply'))
    .description('validate a cluster spec, show the plan, and store it for the controller (re-applying an unchanged spec changes nothing)')
    .requiredOption('-f, --file <cluster.yaml>', 'cluster spec')
    .option('--wait', 'return once every member is ready (or print what is Pending at the timeout)', false)
    .option('--timeout <seconds>', 'with --wait', '600')
    .action(async (o: EtcdOptions & { file: string; wait: boolean; timeout: string }) => {
      // The clusters of one `warden up --nodes` dir share its passwords (DIR/secrets), so that every
      // `--dir DIR --cluster NAME` command (REST calls, psql through DIR/pgpass, backups) works for each.
      const local = o.etcd === undefined ? await localNodesRuntime(o.dir) : undefined;
      process.exitCode = await runApply({ ...o, timeoutSeconds: Number(o.timeout), ...(local === undefined ? {} : { secrets: await localSecrets(local) }) });
    });

  withEtcd(program.command('get'))
    .description('clusters stored with `warden apply`, or registered nodes')
    .argument('<what>', 'clusters | nodes')
    .addOption(new Option('--format <format>', 'output format').choices(['pretty', 'json']).default('pretty'))
    .action(async (what: string, o: EtcdOptions & { format: string }) => {
      if (what !== 'clusters' && what !== 'nodes') throw new WardenError('config-invalid', `get: expected clusters or nodes, got ${JSON.stringify(what)}`);
      const client = await controlClient(o);
      try {
        const snap = await readControl(client);
        for (const [key, why] of snap.invalid) err(`invalid record ${key}: ${why}`);
        if (what === 'clusters') {
          const rows = [...snap.specs.values()].map((s) => ({ name: s.cluster, generation: s.generation, uid: s.uid, file: s.file, status: snap.statuses.get(s.cluster) ?? null }));
          if (o.format === 'json') return out(JSON.stringify(rows, null, 2));
          out(table([['NAME', 'GENERATION', 'READY', 'ROUTERS', 'PENDING', 'LAST ERROR'], ...rows.map((r) => [r.name, String(r.generation), r.status === null ? '-' : `${r.status.ready}/${r.status.desired}`, r.status === null ? '-' : `${r.status.routers.placed}/${r.status.routers.desired}`, r.status === null ? '-' : String(r.status.pending.length), r.status?.lastError ?? ''])]));
          for (const r of rows) for (const p of r.status?.pending ?? []) out(`  ${r.name}: Pending ${p.name}: ${p.reason.message}`);
          return;
        }
        const rows = [...snap.nodes.values()].map(({ record }) => ({ ...record, settings: snap.nodeSettings.get(record.name) ?? null, controller: snap.controller?.node === record.name }));
        if (o.format === 'json') return out(JSON.stringify(rows, null, 2));
        const troubles = workloadTroubles(snap);
        out(table([['NAME', 'SCHEDULING', 'WORKLOADS', 'CONTROLLER', 'VERSION', 'LABELS'], ...rows.map((r) => [r.name, r.settings?.drain === true ? 'draining' : r.settings?.unschedulable === true ? 'cordoned' : 'schedulable', r.workloads.map((w) => `${w.name}:${w.state}`).join(',') || '-', r.controller ? 'active' : '', r.version, Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(',')])]));
        for (const line of troubles) out(`  ${line}`);
      } finally {
        client.close();
      }
    });

  withEtcd(program.command('delete'))
    .description('delete a cluster stored with `warden apply`: its members are stopped and their data moved aside on their nodes')
    .argument('<what>', 'cluster')
    .argument('<name>', 'the cluster name')
    .requiredOption('--confirm <name>', 'the cluster name again')
    .action(async (what: string, name: string, o: EtcdOptions & { confirm: string }) => {
      if (what !== 'cluster') throw new WardenError('config-invalid', `delete: expected "cluster", got ${JSON.stringify(what)}`);
      if (o.confirm !== name) throw new WardenError('config-invalid', `--confirm ${JSON.stringify(o.confirm)} does not match the cluster name ${JSON.stringify(name)}; nothing was deleted`);
      const client = await controlClient(o);
      try {
        const stored = (await readControl(client)).specs.get(name);
        if (stored === undefined) throw new WardenError('not-found', `no stored spec for cluster ${name}`);
        if (!(await client.delete(specKey(name), { expectModRevision: stored.modRevision }))) throw new WardenError('conflict', `the spec of ${name} changed meanwhile; nothing was deleted`);
        out(`cluster ${name} deleted: the controller removes its members and routers`);
      } finally {
        client.close();
      }
    });

  const settings = (mode: 'cordon' | 'uncordon' | 'drain'): void => {
    withEtcd(node.command(mode))
      .description(mode === 'cordon' ? 'place nothing new on NODE' : mode === 'uncordon' ? 'let NODE take new workloads again (and stop draining it)' : 'move every member off NODE (a primary by switchover first); implies cordon')
      .argument('<node>', 'node name')
      .action(async (name: string, o: EtcdOptions) => {
        const client = await controlClient(o);
        try {
          if ((await client.get(nodeKey(name))) === undefined) err(`note: node ${name} is not registered now; the setting applies when it is`);
          const s: NodeSettings = { unschedulable: mode !== 'uncordon', drain: mode === 'drain', updatedAtMs: Date.now() };
          await client.put(nodeSettingsKey(name), JSON.stringify(s));
          out(`node ${name}: ${mode === 'uncordon' ? 'schedulable' : mode === 'cordon' ? 'cordoned' : 'draining'}`);
        } finally {
          client.close();
        }
      });
  };
  settings('cordon');
  settings('uncordon');
  settings('drain');
}

/** The dir of a `warden up --nodes` runtime (resolved), or undefined for any other dir. */
async function localNodesRuntime(dirArg: string | undefined): Promise<string | undefined> {
  const dir = resolve(dirArg ?? '.warden');
  const layout = await readLayout(dir).catch(() => undefined);
  return layout?.nodes === undefined ? undefined : dir;
}

/**
 * `apply --dir` of a cluster with backup schedules onto a `--nodes` runtime: `backup/schedules`
 * names the dir, so that the leader's agent runs them as `warden backup --dir DIR --cluster NAME`.
 * With `--etcd` there is no dir to run the backup commands from: said, and nothing is scheduled.
 */
async function publishLocalSchedules(client: EtcdClient, o: EtcdOptions, spec: ClusterSpec): Promise<void> {
  const schedules = (spec.backups?.repos ?? []).flatMap((r) => r.schedules.map((x) => ({ repo: r.name, type: x.type, cron: x.cron })));
  const key = `${clusterPrefix(spec.name)}${KEYS.backupSchedules}`;
  if (schedules.length === 0) {
    // Schedules taken out of the spec (or backups turned off): the leader's agent runs none from now on.
    if (await client.delete(key, { timeoutMs: CALL_TIMEOUT_MS })) out(`backups: ${spec.name} has no backup schedules any more`);
    return;
  }
  const dir = o.etcd === undefined ? await localNodesRuntime(o.dir) : undefined;
  if (dir === undefined) {
    err(`note: spec.backups schedules of ${spec.name} are not run: the backup commands run from a \`warden up --nodes\` dir (apply with --dir)`);
    return;
  }
  const record: SchedulesRecord = { dir, schedules };
  await client.put(key, JSON.stringify(record), { timeoutMs: CALL_TIMEOUT_MS });
  for (const x of schedules) out(`backups: ${x.type} backup of ${spec.name} into ${x.repo} at "${x.cron}" (UTC), run by its leader's agent`);
}

/**
 * One line per workload that does not run or last ended with an error, as its node daemon publishes
 * it (`node-1: member app-1 restarting, 3 restart(s); last: exited (code 2): <its last output line>`),
 * for one cluster or all.
 */
export function workloadTroubles(snap: ControlSnapshot, cluster?: string): string[] {
  const lines: string[] = [];
  for (const { record } of snap.nodes.values()) {
    for (const w of record.workloads) {
      if (cluster !== undefined && w.cluster !== cluster) continue;
      if (w.state === 'running' && w.lastError === undefined) continue;
      lines.push(`${record.name}: ${w.kind} ${cluster === undefined ? `${w.cluster}/` : ''}${w.name} ${w.state}, ${w.restarts} restart(s)${w.lastError === undefined ? '' : `; last: ${w.lastError}`}`);
    }
  }
  return lines;
}
