import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { eventually } from '../core/deadline.js';
import { defaultLocalNodes, DEFAULT_LOCAL_NODES, ensureNodesNetwork, MAX_LOCAL_NODES, prepareNodesRuntime, localSecrets, type LocalNodeSpec } from '../controller/local-nodes.js';
import { loadNodesFile } from '../spec/load-spec-files.js';
import { readControl, runApply } from './cluster-commands.js';
import pc from 'picocolors';
import { describeError, WardenError } from '../core/errors.js';
import { isProcessAlive } from '../core/process-info.js';
import { readLayout } from '../controller/runtime-layout.js';
import { findOrphans, stopOrphans } from '../controller/orphans.js';
import { prepareRuntimeDir, runningSupervisor, startSupervisor } from '../controller/local-up.js';
import { etcdClientFromState, readStateFile } from '../controller/state-file.js';
import { defaultClusterSpec, formatSpecError, loadClusterSpec, noticesForController, type ClusterSpec, type SpecError } from '../spec/index.js';
import { setUpStanza } from './backup-commands.js';
import type { DataSourcePlan } from '../controller/backup-runtime.js';
import { resolveDataSource, storedDataSource } from './data-source.js';
import { describeTarget } from './recover-to-target.js';
import { listFromView, renderList } from './list.js';
import { routerReport } from './router-commands.js';
import { readClusterView, resolveTarget } from './target.js';

const UP_TIMEOUT_MS = 240_000;
type Palette = ReturnType<typeof pc.createColors>;

/** `warden up`: starts (or reports) the local runtime and returns once the cluster is healthy. Exit code. */
export async function runUp(opts: { file?: string; dir?: string; sourceDir?: string; nodes?: string; netns?: boolean; static?: boolean; color: boolean }): Promise<number> {
  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  const c: Palette = pc.createColors(opts.color);
  const dir = resolve(opts.dir ?? '.warden');
  let spec: ClusterSpec = defaultClusterSpec();
  if (opts.static === true && (opts.nodes !== undefined || opts.netns === true)) {
    process.stderr.write(`warden up: --static runs the cluster under the supervisor without node daemons: it does not go with --${opts.netns === true ? 'netns' : 'nodes'}\n`);
    return 2;
  }
  const prior = await readLayout(dir);
  let notices: readonly SpecError[] = [];
  if (opts.file !== undefined) {
    const loaded = await loadClusterSpec(opts.file);
    if (!loaded.ok) {
      for (const e of loaded.errors) process.stderr.write(`${formatSpecError(e)}\n`);
      return 2;
    }
    spec = loaded.spec;
    notices = loaded.notices;
  }
  const mode = runtimeMode(opts, prior);
  // On node daemons the controller runs the spec: placement and router replicas are applied.
  for (const n of mode.nodes ? noticesForController(notices) : notices) out(c.dim(`note: ${formatSpecError(n)}`));
  if (mode.note !== undefined) out(c.dim(`note: ${mode.note}`));
  if (opts.sourceDir !== undefined && spec.dataSource === undefined) {
    process.stderr.write(`warden up: --source-dir names the runtime dir of the cluster in spec.dataSource.postgresCluster, and ${opts.file ?? 'the default spec'} has none\n`);
    return 2;
  }
  if (mode.nodes) return runUpNodes({ ...opts, dir, spec }, c, out);
  const running = await runningSupervisor(dir);
  if (running !== undefined) {
    out(`A cluster is already running in ${dir} (supervisor pid ${running}).`);
    if (opts.file !== undefined) {
      const existing = await readLayout(dir);
      if (existing !== undefined && existing.cluster !== spec.name) {
        process.stderr.write(`warden up: ${dir} runs cluster "${existing.cluster}", but ${opts.file} names "${spec.name}": use another --dir\n`);
        return 1;
      }
      out(c.yellow(`note: ${opts.file} was not applied: a running local runtime keeps the spec it was started with (warden down, then warden up -f, to change it)`));
    }
    await report(dir, c, out);
    return 0;
  }
  // A supervisor killed with -9 leaves etcd, agents and the router running on the dir's ports:
  // stop those we recognise (by PID, command line checked) so that this `up` can start them again.
  if (prior !== undefined) {
    const orphans = await findOrphans(prior, await readStateFile(dir).catch(() => undefined));
    if (orphans.length > 0) {
      out(`the previous supervisor is gone; stopping what it left running: ${orphans.map((o) => `${o.what} (pid ${o.pid})`).join(', ')}`);
      await stopOrphans(orphans);
    }
  }
  const dataSource = await upDataSource(spec, dir, opts.sourceDir, prior !== undefined, c, out);
  if (typeof dataSource === 'number') return dataSource;
  const layout = await prepareRuntimeDir(dir, spec, opts.file !== undefined, dataSource);
  if (spec.backups !== undefined && layout.backup === undefined) {
    out(c.yellow(`note: spec.backups was not applied: ${dir} was set up without backups and keeps its layout (use a new --dir, or \`warden down --purge\` first)`));
  }
  out(`${c.bold('warden up')}: cluster ${c.bold(layout.cluster)}, ${layout.members.length} PostgreSQL members, ${layout.etcd.members.length} etcd members, in ${dir}`);
  const pid = startSupervisor(dir);
  out(`supervisor started (pid ${pid}); logs in ${dir}/supervisor.log and ${dir}/members/*/agent.log`);

  const startedAt = Date.now();
  const deadline = startedAt + UP_TIMEOUT_MS;
  const seen = new Map<string, string>();
  let leader: string | undefined;
  for (;;) {
    if (Date.now() > deadline) {
      process.stderr.write(`the cluster did not become healthy within ${UP_TIMEOUT_MS / 1000} s; see ${dir}/members/*/agent.log\n`);
      return 1;
    }
    // Ask about the process we started, not its PID file: under load a new supervisor can take
    // seconds to write it, and `up` must not report a live supervisor as gone.
    if (!(await isProcessAlive(pid))) {
      process.stderr.write(`the supervisor exited; see ${dir}/supervisor.out and ${dir}/supervisor.log\n`);
      return 1;
    }
    const states = await Promise.all(
      layout.members.map(async (m) => {
        try {
          const res = await fetch(`http://${m.host}:${m.apiPort}/patroni`, { signal: AbortSignal.timeout(1000) });
          const body = (await res.json()) as { role?: string; state?: string; warden?: { isLeader?: boolean; reason?: { code?: string; message?: string }; state?: string } };
          return { name: m.name, leader: body.warden?.isLeader === true, role: body.role ?? '?', state: body.warden?.state ?? body.state ?? '?', code: body.warden?.reason?.code ?? '', reason: body.warden?.reason?.message ?? '' };
        } catch {
          return { name: m.name, leader: false, role: '?', state: 'agent starting', code: '', reason: '' };
        }
      }),
    );
    // Every member gave up bootstrapping: waiting longer changes nothing, say why now.
    if (states.length > 0 && states.every((s) => s.code === 'bootstrap-gave-up')) {
      process.stderr.write(`the cluster could not be bootstrapped: ${states[0]?.reason ?? ''}\nsee ${dir}/members/*/agent.log; then \`warden down --dir ${dir} --purge\` and \`warden up\` again\n`);
      return 1;
    }
    for (const s of states) {
      const line = `${s.leader ? 'leader, ' : ''}${s.state}`;
      if (seen.get(s.name) !== line) {
        seen.set(s.name, line);
        out(`  ${s.name.padEnd(12)} ${line}${s.reason !== '' ? c.dim(` — ${s.reason}`) : ''}`);
      }
    }
    const leaders = states.filter((s) => s.leader && s.role === 'primary' && s.state === 'running');
    const replicasOk = states.filter((s) => !s.leader && s.state === 'streaming');
    if (leaders.length === 1 && replicasOk.length === states.length - 1) {
      leader = leaders[0]?.name;
      break;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  out(c.green('cluster is healthy'));
  // The stanza is created here, once the cluster is healthy: it needs a running primary, `up` is
  // the one place that knows the cluster just came up, and stanza-create is idempotent (it also
  // refuses a repository of another system identifier). Until then WAL waits in pg_wal as .ready.
  if (layout.backup !== undefined && leader !== undefined) {
    try {
      await setUpStanza(dir, leader, out);
    } catch (e) {
      process.stderr.write(`warden up: backups: ${describeError(e)} (the cluster runs; WAL stays in pg_wal until archiving works)\n`);
      await report(dir, c, out);
      return 1;
    }
  }
  await report(dir, c, out);
  return 0;
}

/**
 * spec.dataSource, resolved (source cluster, repository, a backup before the target) before
 * anything is written, on either runtime: a fault is exit 2 at the spec's field (the returned
 * number), and no runtime dir is made. An existing dir keeps its data: undefined, with a note.
 */
async function upDataSource(spec: ClusterSpec, dir: string, sourceDir: string | undefined, dirExists: boolean, c: Palette, out: (s: string) => void): Promise<DataSourcePlan | undefined | number> {
  if (spec.dataSource === undefined) return undefined;
  if (dirExists) {
    out(c.dim(`note: spec.dataSource applies when a runtime dir is made; ${dir} exists and keeps its data`));
    return undefined;
  }
  const resolved = await resolveDataSource({ ...spec, dataSource: spec.dataSource }, { dir, sourceDir });
  if (!resolved.ok) {
    for (const e of resolved.errors) process.stderr.write(`${formatSpecError(e)}\n`);
    return 2;
  }
  const p = resolved.plan;
  const from = p.sourceDir === undefined ? `stanza ${p.stanza} in the repository at ${p.repoPath}` : `cluster ${p.sourceCluster} (${p.sourceDir}), ${p.repoName}`;
  out(`data source: ${from} set ${p.setLabel}, recovered to ${describeTarget(p.target)}; this cluster archives into its own repository`);
  return p;
}

/**
 * Which runtime `warden up` runs (docs/architecture.md, "Nodes on one machine"): a dir that exists
 * keeps the one it was made with; a new one gets node daemons (the code path of a multi-host
 * deployment), unless `--static` asks for the supervisor-only runtime.
 */
export function runtimeMode(
  opts: { readonly nodes?: string; readonly netns?: boolean; readonly static?: boolean },
  prior: { readonly nodes?: readonly unknown[] } | undefined,
): { nodes: boolean; note?: string } {
  if (opts.nodes !== undefined || opts.netns === true) return { nodes: true };
  if (prior !== undefined) {
    const nodes = prior.nodes !== undefined;
    return nodes && opts.static === true ? { nodes, note: 'this dir was made with node daemons and keeps them: --static applies to a new dir' } : { nodes };
  }
  if (opts.static === true) return { nodes: false };
  return { nodes: true };
}

/**
 * `warden up --nodes N|nodes.yaml`: etcd and N node daemons under the supervisor, then the spec
 * applied as `warden apply --dir DIR --wait` would (docs/architecture.md, "Nodes on one machine").
 * On a running runtime, `-f` applies the file: a changed spec (replicas 3 → 5) is carried out.
 */
async function runUpNodes(opts: { file?: string; dir: string; sourceDir?: string; nodes?: string; netns?: boolean; spec: ClusterSpec }, c: Palette, out: (s: string) => void): Promise<number> {
  const { dir, spec } = opts;
  const err = (s: string): void => void process.stderr.write(`warden up: ${s}\n`);
  const prior = await readLayout(dir);
  if (prior !== undefined && prior.nodes === undefined) {
    err(`${dir} was set up without node daemons (\`warden up --static\`: a cluster under the supervisor alone): use another --dir, or \`warden down --dir ${dir} --purge\` first`);
    return 1;
  }
  if (prior !== undefined && prior.cluster !== spec.name && opts.file !== undefined) {
    err(`${dir} runs cluster "${prior.cluster}", but ${opts.file} names "${spec.name}": use another --dir (\`warden apply -f ${opts.file} --dir ${dir}\` adds a second cluster to its nodes)`);
    return 1;
  }
  // The controller gives every member the source's repository, set and target (/warden/_datasources/<cluster>).
  const plan = await upDataSource(spec, dir, opts.sourceDir, prior !== undefined, c, out);
  if (typeof plan === 'number') return plan;
  const dataSource = plan === undefined ? undefined : await storedDataSource(spec.name, plan);
  let nodes: LocalNodeSpec[] = [];
  if (opts.nodes !== undefined && prior === undefined) {
    const parsed = await localNodesOf(opts.nodes);
    if (typeof parsed === 'number') return parsed;
    nodes = parsed;
  } else if (opts.nodes !== undefined) {
    out(c.dim(`note: ${dir} keeps the ${prior?.nodes?.length ?? 0} nodes it was made with; --nodes ${opts.nodes} applies to a new dir`));
  }
  if (opts.netns === true && prior !== undefined && prior.netns === undefined) {
    out(c.dim(`note: ${dir} was made without --netns and keeps its nodes on 127.0.0.1; --netns applies to a new dir`));
  }
  const running = await runningSupervisor(dir);
  if (running === undefined) {
    if (prior !== undefined) {
      const orphans = await findOrphans(prior, await readStateFile(dir).catch(() => undefined));
      if (orphans.length > 0) {
        out(`the previous supervisor is gone; stopping what it left running: ${orphans.map((o) => `${o.what} (pid ${o.pid})`).join(', ')}`);
        await stopOrphans(orphans);
      }
    }
    const layout = await prepareNodesRuntime(dir, prior === undefined ? spec : { ...spec, name: prior.cluster }, nodes.length > 0 ? nodes : defaultLocalNodes(DEFAULT_LOCAL_NODES), { netns: opts.netns === true });
    ensureNodesNetwork(layout);
    out(`${c.bold('warden up')}: ${layout.nodes?.length ?? 0} node daemons (${(layout.nodes ?? []).map((n) => n.name).join(', ')}) and ${layout.etcd.members.length} etcd members, in ${dir}`);
    if (layout.netns !== undefined) out(`network namespaces on ${layout.netns.subnet}: ${layout.netns.hosts.map((h) => `${h.name} ${h.ip} (ns ${h.ns})`).join(', ')}; etcd and this machine at ${layout.netns.testerIp}`);
    const pid = startSupervisor(dir);
    out(`supervisor started (pid ${pid}); logs in ${dir}/supervisor.log and ${dir}/nodes/*.log`);
  } else {
    out(`A cluster is already running in ${dir} (supervisor pid ${running}).`);
  }
  const state = await eventually(async () => {
    const s = await readStateFile(dir).catch(() => undefined);
    if (s === undefined) return undefined;
    const client = etcdClientFromState(s, 2_000);
    try {
      await client.get('/warden/', { timeoutMs: 2_000 });
      return s;
    } catch {
      return undefined;
    } finally {
      client.close();
    }
  }, { timeoutMs: 60_000, intervalMs: 500, what: 'etcd of the runtime answering' });
  const layout = await readLayout(dir);
  const cluster = layout?.cluster ?? spec.name;
  const client = etcdClientFromState(state, 5_000);
  let storedText: string | undefined;
  try {
    // Applied before every node registered, the controller would place all members on the first one.
    const names = (layout?.nodes ?? []).map((n) => n.name);
    const snap = await eventually(async () => {
      const s = await readControl(client).catch(() => undefined);
      return s !== undefined && names.every((n) => s.nodes.has(n)) ? s : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500, what: `node daemons ${names.join(', ')} registered in etcd (see ${dir}/nodes/*.log)` });
    storedText = snap.specs.get(cluster)?.text;
  } finally {
    client.close();
  }
  let file = opts.file;
  if (file === undefined) {
    file = join(dir, 'cluster.yaml');
    // Without -f, the cluster stays as it was applied last (a first `up -f FILE` left no
    // DIR/cluster.yaml): the stored spec, re-applied unchanged; the default only for a new cluster.
    if (!existsSync(file)) await writeFile(file, storedText ?? defaultSpecText(cluster));
    out(c.dim(`spec: ${file} (edit it, then \`warden apply -f ${file} --dir ${dir}\`)`));
  }
  const rc = await runApply({ dir, file, wait: true, timeoutSeconds: UP_TIMEOUT_MS / 1000, secrets: await localSecrets(dir), ...(dataSource === undefined ? {} : { dataSource }) });
  if (rc !== 0) return rc;
  // state.json follows etcd every 2 s: wait for the members the spec asks for before reporting.
  await eventually(async () => {
    const s = await readStateFile(dir).catch(() => undefined);
    return s !== undefined && s.members.length >= spec.members.length && s.members.every((m) => m.node !== undefined) ? true : undefined;
  }, { timeoutMs: 20_000, intervalMs: 500, what: 'state.json listing the members' }).catch(() => undefined);
  out(c.green('cluster is healthy'));
  // The backups follow the spec applied just now (added, changed or taken out on a dir made before):
  // without -f that is DIR/cluster.yaml (or the stored spec written there), not the default.
  const loaded = opts.file === undefined ? await loadClusterSpec(file) : undefined;
  const applied = loaded?.ok === true ? loaded.spec : spec;
  if (applied.backups !== undefined) {
    // The leader's agent creates the stanza (node daemons set postgresql.archive.create_stanza);
    // this checks that WAL reaches the repository and publishes the schedules, as a static `up` does.
    const leader = (await readClusterView(await resolveTarget({ dir })).catch(() => undefined))?.leader?.name;
    try {
      if (leader === undefined) throw new WardenError('conflict', 'no leader to check archiving against');
      await setUpStanza(dir, leader, out);
    } catch (e) {
      err(`backups: ${describeError(e)} (the cluster runs; WAL stays in pg_wal until archiving works)`);
      await report(dir, c, out);
      return 1;
    }
  }
  await report(dir, c, out);
  return 0;
}

/** `--nodes`: a count (1-9: node-1..N in zones a, b, c…) or a nodes file as `warden plan --nodes` reads it. Exit code 2 when invalid. */
async function localNodesOf(arg: string): Promise<LocalNodeSpec[] | number> {
  if (/^\d+$/.test(arg)) {
    const n = Number(arg);
    if (n < 1 || n > MAX_LOCAL_NODES) {
      process.stderr.write(`warden up: --nodes ${arg}: between 1 and ${MAX_LOCAL_NODES} nodes on one machine\n`);
      return 2;
    }
    return defaultLocalNodes(n);
  }
  const loaded = await loadNodesFile(arg);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${formatSpecError(e)}\n`);
    return 2;
  }
  for (const n of loaded.notices) process.stdout.write(`note: ${formatSpecError(n)}\n`);
  if (loaded.file.nodes.length === 0 || loaded.file.nodes.length > MAX_LOCAL_NODES) {
    process.stderr.write(`warden up: ${arg}: between 1 and ${MAX_LOCAL_NODES} nodes on one machine, got ${loaded.file.nodes.length}\n`);
    return 2;
  }
  return loaded.file.nodes.map((n) => ({ name: n.name, labels: n.labels, taints: n.taints }));
}

/** The spec `warden up --nodes` applies when no -f is given: three members of cluster "demo". */
function defaultSpecText(cluster: string): string {
  return `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: ${cluster}\nspec:\n  instances:\n  - name: instance1\n    replicas: 3\n`;
}

async function report(dir: string, c: Palette, out: (s: string) => void): Promise<void> {
  const state = await readStateFile(dir);
  const layout = await readLayout(dir);
  if (state === undefined || layout === undefined) return;
  try {
    const view = await readClusterView(await resolveTarget({ dir }));
    out(renderList(listFromView(state.cluster, view), { extended: false, color: c.isColorSupported }));
    const leader = state.members.find((m) => m.name === view.leader?.name);
    if (leader !== undefined) {
      out('');
      out(c.bold('Connect to the primary:'));
      out(`  PGPASSFILE=${state.pgpassFile} psql "host=${leader.host} port=${leader.port} user=${state.superuser} dbname=postgres"`);
    }
    const routerLines = await routerReport(state, 10_000);
    if (routerLines.length > 0) {
      out('');
      out(c.bold(routerLines[0] ?? ''));
      for (const line of routerLines.slice(1)) out(line);
    }
  } catch (e) {
    out(c.yellow(`could not read the cluster from etcd: ${describeError(e)}`));
  }
  const flag = dir === resolve('.warden') ? '' : ` --dir ${dir}`;
  out('');
  out(c.bold('Try next:'));
  out(`  npx warden list${flag} -e                     # members, roles, lag, and why each agent did what it did`);
  out(`  kill -9 <agentPid of the leader>  (see ${dir}/state.json)   # then watch: npx warden list${flag}`);
  out(`  npx warden down${flag} [--purge]             # stop everything (and delete the data)`);
}

/** Wraps WardenErrors thrown by `up` into a message and exit code. */
export function explainUpError(e: unknown): number {
  if (e instanceof WardenError) {
    process.stderr.write(`warden up: ${describeError(e)}\n`);
    return e.code === 'config-invalid' ? 2 : 1;
  }
  throw e;
}
