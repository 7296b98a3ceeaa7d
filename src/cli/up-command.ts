import { resolve } from 'node:path';
import pc from 'picocolors';
import { describeError, WardenError } from '../core/errors.js';
import { isProcessAlive } from '../core/process-info.js';
import { readLayout } from '../controller/runtime-layout.js';
import { findOrphans, stopOrphans } from '../controller/orphans.js';
import { prepareRuntimeDir, runningSupervisor, startSupervisor } from '../controller/local-up.js';
import { readStateFile } from '../controller/state-file.js';
import { defaultClusterSpec, formatSpecError, loadClusterSpec, type ClusterSpec } from '../spec/index.js';
import { setUpStanza } from './backup-commands.js';
import type { DataSourcePlan } from '../controller/backup-runtime.js';
import { resolveDataSource } from './data-source.js';
import { describeTarget } from './recover-to-target.js';
import { listFromView, renderList } from './list.js';
import { routerReport } from './router-commands.js';
import { readClusterView, resolveTarget } from './target.js';

const UP_TIMEOUT_MS = 240_000;
type Palette = ReturnType<typeof pc.createColors>;

/** `warden up`: starts (or reports) the local runtime and returns once the cluster is healthy. Exit code. */
export async function runUp(opts: { file?: string; dir?: string; sourceDir?: string; color: boolean }): Promise<number> {
  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  const c: Palette = pc.createColors(opts.color);
  const dir = resolve(opts.dir ?? '.warden');
  let spec: ClusterSpec = defaultClusterSpec();
  if (opts.file !== undefined) {
    const loaded = await loadClusterSpec(opts.file);
    if (!loaded.ok) {
      for (const e of loaded.errors) process.stderr.write(`${formatSpecError(e)}\n`);
      return 2;
    }
    spec = loaded.spec;
    for (const n of loaded.notices) out(c.dim(`note: ${formatSpecError(n)}`));
  }
  if (opts.sourceDir !== undefined && spec.dataSource === undefined) {
    process.stderr.write(`warden up: --source-dir names the runtime dir of the cluster in spec.dataSource.postgresCluster, and ${opts.file ?? 'the default spec'} has none\n`);
    return 2;
  }
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
  const prior = await readLayout(dir);
  if (prior !== undefined) {
    const orphans = await findOrphans(prior, await readStateFile(dir).catch(() => undefined));
    if (orphans.length > 0) {
      out(`the previous supervisor is gone; stopping what it left running: ${orphans.map((o) => `${o.what} (pid ${o.pid})`).join(', ')}`);
      await stopOrphans(orphans);
    }
  }
  // spec.dataSource is resolved (source cluster, repository, a backup before the target) before
  // anything is written: a fault is exit 2 at the spec's field, and no runtime dir is made.
  let dataSource: DataSourcePlan | undefined;
  if (spec.dataSource !== undefined && prior === undefined) {
    const resolved = await resolveDataSource({ ...spec, dataSource: spec.dataSource }, { dir, sourceDir: opts.sourceDir });
    if (!resolved.ok) {
      for (const e of resolved.errors) process.stderr.write(`${formatSpecError(e)}\n`);
      return 2;
    }
    dataSource = resolved.plan;
    out(`data source: cluster ${dataSource.sourceCluster} (${dataSource.sourceDir}), ${dataSource.repoName} set ${dataSource.setLabel}, recovered to ${describeTarget(dataSource.target)}; this cluster archives into its own repository`);
  } else if (spec.dataSource !== undefined) {
    out(c.dim(`note: spec.dataSource applies when a runtime dir is made; ${dir} exists and keeps its data`));
  }
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
