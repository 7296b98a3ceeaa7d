import Table from 'cli-table3';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { eventually } from '../core/deadline.js';
import { WardenError } from '../core/errors.js';
import { lagBytes, parseLsn } from '../core/lsn.js';
import { fetchPeer } from '../agent/peers.js';
import { clusterPrefix, KEYS, parseScheduledAt, switchoverCandidate, synchronousCountProblem, type ClusterView, type DynamicConfig } from '../ha/index.js';
import { validateDynamicConfig } from '../spec/index.js';
import { callAgent, confirm, confirmByTyping, ctlTls, restAuthFor } from './agent-client.js';
import { listFromView } from './list.js';
import { etcdClientFor, readClusterView, resolveTarget, type Target, type TargetOptions } from './target.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);

function withTarget(cmd: Command): Command {
  return cmd
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (with --cluster)')
    .option('--cluster <name>', 'cluster name (with --etcd; with --dir, another cluster of that runtime\'s etcd)');
}

async function load(o: TargetOptions): Promise<{ t: Target; view: ClusterView }> {
  const t = await resolveTarget(o);
  return { t, view: await readClusterView(t) };
}

function member(view: ClusterView, name: string): NonNullable<ReturnType<ClusterView['members']['get']>> {
  const m = view.members.get(name);
  if (m === undefined) throw new WardenError('not-found', `no member named ${name}; members: ${[...view.members.keys()].sort().join(', ') || 'none'}`);
  return m;
}

function leaderOf(view: ClusterView): NonNullable<ReturnType<ClusterView['members']['get']>> {
  const name = view.leader?.name;
  const m = name === undefined ? undefined : view.members.get(name);
  if (m === undefined) throw new WardenError('conflict', 'the cluster has no leader right now');
  return m;
}

/** Prints an agent's answer; a non-2xx answer becomes exit code 1. */
function report(who: string, r: { status: number; text: string }): void {
  const ok = r.status >= 200 && r.status < 300;
  (ok ? process.stdout : process.stderr).write(`${who}: ${r.text.trim()}${ok ? '' : ` (HTTP ${r.status})`}\n`);
  if (!ok) process.exitCode = 1;
}

/** Parses `key=value` with JSON values where they parse (numbers, booleans, null), text otherwise. */
export function parseAssignment(text: string): [string[], unknown] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new WardenError('config-invalid', `expected key=value, got ${JSON.stringify(text)}`);
  const path = text.slice(0, eq).trim().split('.');
  const raw = text.slice(eq + 1);
  let value: unknown = raw;
  try {
    const j = JSON.parse(raw) as unknown;
    if (typeof j !== 'object' || j === null) value = j;
  } catch {
    // not JSON: keep the text
  }
  return [path, value];
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const k of path.slice(0, -1)) {
    const next = cur[k];
    cur[k] = typeof next === 'object' && next !== null ? { ...(next as Record<string, unknown>) } : {};
    cur = cur[k] as Record<string, unknown>;
  }
  const last = path[path.length - 1];
  if (last === undefined) return;
  if (value === null) delete cur[last];
  else cur[last] = value;
}

/** Leaf-by-leaf differences between two configs, as `-`/`+` lines. */
export function configDiff(before: unknown, after: unknown, prefix = ''): string[] {
  const lines: string[] = [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    for (const k of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) lines.push(...configDiff(before[k], after[k], prefix === '' ? k : `${prefix}.${k}`));
    return lines;
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return lines;
  if (before !== undefined) lines.push(`- ${prefix}: ${JSON.stringify(before)}`);
  if (after !== undefined) lines.push(`+ ${prefix}: ${JSON.stringify(after)}`);
  return lines;
}

/** Compare-and-swap write of the config key; a clear error when it changed meanwhile. */
async function writeConfig(t: Target, view: ClusterView, next: DynamicConfig): Promise<void> {
  const client = etcdClientFor(t, 3000);
  try {
    const key = clusterPrefix(t.cluster) + KEYS.config;
    const ok = view.configModRevision === undefined ? await client.create(key, JSON.stringify(next)) : await client.compareAndSwap(key, JSON.stringify(next), view.configModRevision);
    if (!ok) throw new WardenError('conflict', 'the configuration changed while you edited it: nothing written, run the command again');
  } finally {
    client.close();
  }
}

async function peersOf(view: ClusterView): Promise<Awaited<ReturnType<typeof fetchPeer>>[]> {
  return Promise.all([...view.members.values()].map((m) => fetchPeer(m.name, m.apiUrl, 2000, ctlTls())));
}

/**
 * Waits for `call` and meanwhile says what the member is doing (its state and last decision,
 * read from GET /patroni every 3 s, printed when they change): an operation never waits silently.
 */
async function withProgress<T>(name: string, apiUrl: string, call: Promise<T>): Promise<T> {
  let last = '';
  const started = Date.now();
  const timer = setInterval(() => {
    void callAgent(apiUrl, 'GET', '/patroni', { timeoutMs: 2000 })
      .then((r) => {
        const body = JSON.parse(r.text) as { warden?: { state?: string; reason?: { message?: string } } };
        const line = `${body.warden?.state ?? '?'} — ${body.warden?.reason?.message ?? ''}`;
        if (line !== last) {
          last = line;
          out(`  ${name} (${Math.round((Date.now() - started) / 1000)} s): ${line}`);
        }
      })
      .catch(() => undefined);
  }, 3000);
  try {
    return await call;
  } finally {
    clearInterval(timer);
  }
}

/** Registers switchover, failover, restart, reload, reinit, pause, resume, edit-config, show-config, history, topology, dsn and remove. */
export function registerOpsCommands(program: Command): void {
  withTarget(program.command('switchover'))
    .description('planned, lossless change of leader: the candidate has every WAL byte of the old primary before it is promoted')
    .option('--candidate <member>', 'the new leader (default: the best eligible replica)')
    .option('--scheduled <iso8601>', 'when, with a time zone (e.g. 2026-11-21T23:00:00Z)')
    .option('--force', 'do not ask for confirmation', false)
    .action(async (o: TargetOptions & { candidate?: string; scheduled?: string; force: boolean }) => {
      const { t, view } = await load(o);
      const leader = leaderOf(view);
      const peers = await peersOf(view);
      const leaderPeer = peers.find((p) => p.name === leader.name);
      const verdict = switchoverCandidate(view, peers, leader.name, leaderPeer?.walPosition, o.candidate, 'switchover');
      if ('problem' in verdict) {
        process.stderr.write(`switchover refused: ${verdict.problem.replace(/^no member qualifies: /, 'no member qualifies:\n  ').replace(/; /g, '\n  ')}\n`);
        process.exitCode = 1;
        return;
      }
      const cand = verdict.candidate.name;
      if (!o.force && !(await confirm(`Switch over cluster ${t.cluster} from ${leader.name} to ${cand}${o.scheduled ? ` at ${o.scheduled}` : ''}?`))) return;
      const started = Date.now();
      const r = await callAgent(leader.apiUrl, 'POST', '/switchover', {
        body: { leader: leader.name, candidate: cand, ...(o.scheduled === undefined ? {} : { scheduled_at: o.scheduled }) },
        auth: await restAuthFor(t),
        timeoutMs: 60_000,
      });
      report(leader.name, r);
      if (r.status === 200) out(`took ${((Date.now() - started) / 1000).toFixed(2)} s`);
    });

  withTarget(program.command('failover'))
    .description('promote a chosen member now, even when the leader is gone; warns when it may lose data')
    .requiredOption('--candidate <member>', 'the member to promote')
    .option('--force', 'do not ask for confirmation', false)
    .action(async (o: TargetOptions & { candidate: string; force: boolean }) => {
      const { t, view } = await load(o);
      const cand = member(view, o.candidate);
      const warnings: string[] = [];
      const leaderRec = view.leader === undefined ? undefined : view.members.get(view.leader.name);
      const leaderPos = leaderRec?.walPosition ?? (view.status === undefined ? undefined : undefined);
      if (view.config.synchronous_mode === 'off' || !(view.sync?.members.includes(cand.name) ?? false)) {
        const ref = leaderPos !== undefined ? parseLsn(leaderPos) : view.status?.lsn;
        const lag = ref !== undefined && cand.walPosition !== undefined ? lagBytes(ref, parseLsn(cand.walPosition)) : undefined;
        if (lag === undefined || lag > 0) {
          warnings.push(`${cand.name} is ${lag === undefined ? 'an unknown number of' : lag} bytes behind the last known leader position and is not a synchronous standby: acknowledged writes may be lost`);
        }
      }
      for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
      if (!o.force && !(await confirm(`Fail over cluster ${t.cluster} to ${cand.name}?`))) return;
      const via = leaderRec ?? cand;
      report(via.name, await callAgent(via.apiUrl, 'POST', '/failover', { body: { candidate: cand.name }, auth: await restAuthFor(t), timeoutMs: 60_000 }));
    });

  withTarget(program.command('restart'))
    .description('restart PostgreSQL on a member, or on every member of a role')
    .argument('[member]', 'the member to restart')
    .option('--role <role>', 'primary, replica or any (instead of a member)')
    .option('--pending', 'only members with a pending restart; replicas first', false)
    .option('--switchover', 'with --pending: move the leader away by switchover before restarting it', false)
    .option('--scheduled <iso8601>', 'restart at this time (with a time zone, e.g. 2026-11-21T23:00:00Z); --role and --pending are checked again then')
    .option('--cancel', 'cancel the scheduled restart of the member(s) instead', false)
    .action(async (name: string | undefined, o: TargetOptions & { role?: string; pending: boolean; switchover: boolean; scheduled?: string; cancel: boolean }) => {
      const { t, view } = await load(o);
      const auth = await restAuthFor(t);
      if (name === undefined && o.role === undefined && !o.pending) throw new WardenError('config-invalid', 'name a member, or give --role primary|replica|any, or --pending');
      if (o.role !== undefined && !['primary', 'replica', 'any'].includes(o.role)) throw new WardenError('config-invalid', `--role must be primary, replica or any (got ${o.role})`);
      if (o.scheduled !== undefined && (o.switchover || o.cancel)) throw new WardenError('config-invalid', '--scheduled cannot be combined with --switchover or --cancel');
      if (o.scheduled !== undefined) {
        const at = parseScheduledAt(o.scheduled, '--scheduled');
        if (typeof at === 'string') throw new WardenError('config-invalid', at);
        if (at < Date.now()) throw new WardenError('config-invalid', `--scheduled: ${new Date(at).toISOString()} is in the past`);
      }
      if (o.cancel) {
        const who = name !== undefined ? [member(view, name)] : [...view.members.values()];
        for (const m of who) report(m.name, await callAgent(m.apiUrl, 'DELETE', '/restart', { auth, timeoutMs: 10_000 }));
        return;
      }
      const leaderName = view.leader?.name;
      let targets = name !== undefined ? [member(view, name)] : [...view.members.values()];
      if (o.role === 'primary') targets = targets.filter((m) => m.name === leaderName);
      if (o.role === 'replica') targets = targets.filter((m) => m.name !== leaderName);
      if (o.pending) targets = targets.filter((m) => m.pendingRestart === true);
      // Replicas first, so that the primary restarts last (or hands over first).
      targets.sort((a, b) => Number(a.name === leaderName) - Number(b.name === leaderName) || a.name.localeCompare(b.name));
      if (targets.length === 0) {
        out('nothing to restart');
        return;
      }
      for (const m of targets) {
        if (m.name === leaderName && o.switchover) {
          const peers = await peersOf(view);
          const v = switchoverCandidate(view, peers, m.name, peers.find((p) => p.name === m.name)?.walPosition, undefined, 'switchover');
          if ('problem' in v) throw new WardenError('conflict', `cannot switch over before restarting ${m.name}: ${v.problem}`);
          const sw = await callAgent(m.apiUrl, 'POST', '/switchover', { body: { leader: m.name, candidate: v.candidate.name }, auth, timeoutMs: 60_000 });
          report(m.name, sw);
          if (sw.status !== 200) return;
          // The old leader rejoined as a replica, which restarted it: check before restarting again.
          const st = await callAgent(m.apiUrl, 'GET', '/patroni', { timeoutMs: 5000 });
          if (!/"pending_restart":true/.test(st.text)) {
            out(`${m.name}: restarted as it rejoined after the switchover`);
            continue;
          }
        }
        const conditions = {
          ...(o.pending ? { restart_pending: true } : {}),
          ...(o.scheduled !== undefined && (o.role === 'primary' || o.role === 'replica') ? { role: o.role } : {}),
          ...(o.scheduled === undefined ? {} : { schedule: o.scheduled }),
        };
        if (o.scheduled === undefined) out(`${m.name}: restarting PostgreSQL…`);
        report(m.name, await withProgress(m.name, m.apiUrl, callAgent(m.apiUrl, 'POST', '/restart', { body: conditions, auth, timeoutMs: 150_000 })));
      }
    });

  withTarget(program.command('reload'))
    .description('reload the PostgreSQL configuration on every member (or one)')
    .argument('[member]')
    .action(async (name: string | undefined, o: TargetOptions) => {
      const { t, view } = await load(o);
      const auth = await restAuthFor(t);
      for (const m of name !== undefined ? [member(view, name)] : [...view.members.values()]) {
        report(m.name, await callAgent(m.apiUrl, 'POST', '/reload', { auth, timeoutMs: 40_000 }));
      }
    });

  withTarget(program.command('reinit'))
    .description('re-create a replica from the leader (its old data is moved aside, never deleted)')
    .argument('<member>')
    .option('--from-leader', 'clone from the leader (the only source today)', true)
    .option('--wait', 'wait until it streams again', false)
    .action(async (name: string, o: TargetOptions & { wait: boolean }) => {
      const { t, view } = await load(o);
      const m = member(view, name);
      if (m.name === view.leader?.name) throw new WardenError('conflict', `${name} is the leader: switch over first`);
      const r = await callAgent(m.apiUrl, 'POST', '/reinitialize', { auth: await restAuthFor(t), timeoutMs: 70_000 });
      report(m.name, r);
      if (o.wait && r.status === 200) {
        await eventually(async () => {
          const l = listFromView(t.cluster, await readClusterView(t));
          return l.members.find((x) => x.name === name && x.state === 'streaming');
        }, { timeoutMs: 600_000, intervalMs: 500, what: `${name} to stream again` });
        out(`${name} streams again`);
      }
    });

  const pauseCmd = (pause: boolean): void => {
    withTarget(program.command(pause ? 'pause' : 'resume'))
      .description(pause ? 'maintenance mode: nothing is started, stopped or promoted automatically' : 'leave maintenance mode')
      .option('--wait', 'wait until every agent has seen it', false)
      .action(async (o: TargetOptions & { wait: boolean }) => {
        const { t, view } = await load(o);
        if (view.config.pause === pause) {
          out(`cluster ${t.cluster} is already ${pause ? 'paused' : 'not paused'}`);
          return;
        }
        await writeConfig(t, view, { ...view.config, pause });
        out(`${pause ? 'paused' : 'resumed'} cluster ${t.cluster}`);
        if (o.wait) {
          await eventually(async () => {
            const v = await readClusterView(t);
            const all = [...v.members.values()].every((m) => (m.reason?.code === 'paused') === pause);
            return all ? true : undefined;
          }, { timeoutMs: 60_000, intervalMs: 300, what: 'every agent to see the change' });
          out('every agent has seen it');
        }
      });
  };
  pauseCmd(true);
  pauseCmd(false);

  withTarget(program.command('edit-config'))
    .description('change the cluster configuration (compare-and-swap; shows the diff)')
    .option('-s, --set <key=value...>', 'a dynamic setting, e.g. loop_wait=1 or postgresql.use_pg_rewind=false', [])
    .option('-p, --pg <param=value...>', 'a PostgreSQL parameter, e.g. max_connections=200', [])
    .option('--force', 'apply without asking', false)
    .action(async (o: TargetOptions & { set: string[]; pg: string[]; force: boolean }) => {
      const { t, view } = await load(o);
      if (o.set.length === 0 && o.pg.length === 0) throw new WardenError('config-invalid', 'nothing to change: give --set key=value and/or --pg param=value');
      const next = JSON.parse(JSON.stringify(view.config)) as Record<string, unknown>;
      for (const s of o.set) {
        const [path, value] = parseAssignment(s);
        setPath(next, path, value);
      }
      for (const p of o.pg) {
        const [path, value] = parseAssignment(p);
        setPath(next, ['postgresql', 'parameters', path.join('.')], value);
      }
      const valid = validateDynamicConfig(next);
      if (!valid.ok) {
        for (const e of valid.errors) process.stderr.write(`invalid: ${e}\n`);
        process.exitCode = 2;
        return;
      }
      const tooMany = synchronousCountProblem(view.config, valid.config, view.members.size);
      if (tooMany !== undefined) {
        process.stderr.write(`invalid: ${tooMany}\n`);
        process.exitCode = 2;
        return;
      }
      const diff = configDiff(view.config, valid.config);
      if (diff.length === 0) {
        out('no change');
        return;
      }
      out(diff.join('\n'));
      if (!o.force && !(await confirm('Apply these changes?'))) return;
      await writeConfig(t, view, valid.config);
      out('configuration changed; agents apply it within one loop (parameters that need a restart show as pending restart in `warden list`)');
    });

  withTarget(program.command('show-config'))
    .description('the cluster configuration')
    .option('--format <format>', 'yaml or json', 'yaml')
    .action(async (o: TargetOptions & { format: string }) => {
      const { view } = await load(o);
      out(o.format === 'json' ? JSON.stringify(view.config, null, 2) : stringify(view.config).trimEnd());
    });

  withTarget(program.command('history'))
    .description('timeline switches: timeline, LSN, reason, time, new leader')
    .option('--format <format>', 'pretty or json', 'pretty')
    .action(async (o: TargetOptions & { format: string }) => {
      const { view } = await load(o);
      if (o.format === 'json') {
        out(JSON.stringify(view.history, null, 2));
        return;
      }
      const table = new Table({ head: ['TL', 'LSN', 'Reason', 'Timestamp', 'New Leader'], style: { head: [], border: [] } });
      for (const h of view.history) table.push([String(h.timeline), h.lsn, h.reason, new Date(h.timeMs).toISOString(), h.leader]);
      out(table.toString());
    });

  withTarget(program.command('topology'))
    .description('who streams from whom')
    .option('--format <format>', 'pretty or json', 'pretty')
    .action(async (o: TargetOptions & { format: string }) => {
      const { t, view } = await load(o);
      const list = listFromView(t.cluster, view);
      const leader = list.members.find((m) => m.role === 'leader');
      const replicas = list.members.filter((m) => m.role !== 'leader');
      if (o.format === 'json') {
        out(JSON.stringify({ cluster: t.cluster, leader: leader?.name ?? null, replicas: replicas.map((r) => ({ name: r.name, upstream: leader?.name ?? null, role: r.role, state: r.state, lagBytes: r.lagBytes })) }, null, 2));
        return;
      }
      out(`${t.cluster}`);
      out(`└─ ${leader === undefined ? '(no leader)' : `${leader.name} (leader, ${leader.host}:${leader.port}, TL ${leader.timeline ?? '?'})`}`);
      replicas.forEach((r, i) => out(`   ${i === replicas.length - 1 ? '└─' : '├─'} ${r.name} (${r.role}, ${r.state}, lag ${r.lagBytes ?? '?'} bytes)`));
    });

  withTarget(program.command('dsn'))
    .description('a libpq connection string for the primary (or a replica)')
    .option('--role <role>', 'primary, replica or any', 'primary')
    .action(async (o: TargetOptions & { role: string }) => {
      const { t, view } = await load(o);
      const list = listFromView(t.cluster, view);
      const pick =
        o.role === 'primary'
          ? list.members.find((m) => m.role === 'leader')
          : o.role === 'replica'
            ? list.members.find((m) => m.role !== 'leader' && m.state === 'streaming')
            : list.members.find((m) => m.state === 'running' || m.state === 'streaming');
      if (pick === undefined) throw new WardenError('not-found', `no ${o.role} member is available in cluster ${t.cluster}`);
      const user = t.state?.superuser ?? 'postgres';
      out(`host=${pick.host} port=${pick.port} user=${user} dbname=postgres${t.state !== undefined ? ` passfile=${t.state.pgpassFile}` : ''}`);
    });

  withTarget(program.command('remove'))
    .description("delete a cluster's keys from etcd (asks you to type the cluster name; data directories are left alone)")
    .argument('<cluster>')
    .option('--confirm <name>', 'the cluster name, to confirm without a terminal')
    .action(async (name: string, o: TargetOptions & { confirm?: string }) => {
      const t = await resolveTarget(o);
      if (name !== t.cluster) throw new WardenError('config-invalid', `the target cluster is ${t.cluster}, not ${name}`);
      if (!(await confirmByTyping(`Type the cluster name (${name}) to delete all its keys from etcd`, name, o.confirm))) {
        process.stderr.write('names differ: nothing removed\n');
        process.exitCode = 1;
        return;
      }
      const client = etcdClientFor(t, 3000);
      try {
        const prefix = clusterPrefix(name);
        const snap = await client.range(prefix);
        for (const kv of snap.kvs) await client.delete(kv.key);
        out(`removed ${snap.kvs.length} keys of cluster ${name}`);
      } finally {
        client.close();
      }
    });
}
