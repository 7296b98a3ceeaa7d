import { emptyReply, HttpApp, jsonReply, textReply, type HttpReply, type HttpRequest } from '../core/http-app.js';
import { formatLsn, lagBytes } from '../core/lsn.js';
import type { ArchiveHealth } from '../backup/index.js';
import type { AgentSnapshot } from './agent.js';
import { WARDEN_VERSION } from './agent.js';
import type { Registry } from 'prom-client';
import { addOperationRoutes, type OperationsDeps } from './rest-operations.js';

/**
 * GET /liveness: the HA loop is alive — a cycle completed without throwing within
 * max(5 s, 3 × ttl). Long operations (a clone, a rewind) run beside the loop, which keeps cycling,
 * so they never make it look dead; a loop that throws every time, or has not come round, is.
 */
export function isAlive(s: AgentSnapshot, nowMs = Date.now()): boolean {
  return nowMs - s.lastOkLoopAtMs < Math.max(5000, (s.view?.config.ttl ?? 2) * 3000);
}

/** The agent's snapshot with what watches beside the loop add (the WAL archive on the leader). */
export type PublishedSnapshot = AgentSnapshot & { readonly archive?: ArchiveHealth };

/** Patroni's /patroni shape (role, state, xlog, timeline, …) plus a `warden` block with the decision reason. */
export function patroniStatus(s: PublishedSnapshot): Record<string, unknown> {
  const st = s.status;
  const view = s.view;
  const running = s.pg?.process === 'running' && st !== undefined;
  const body: Record<string, unknown> = {
    state: running ? 'running' : s.state,
    postmaster_start_time: null,
    role: running ? (st.inRecovery ? 'replica' : 'primary') : s.role === 'uninitialized' ? 'uninitialized' : 'replica',
    server_version: 150000,
    patroni: { version: WARDEN_VERSION, scope: s.identity.cluster, name: s.identity.name },
    database_system_identifier: view?.initialize?.value ?? st?.systemIdentifier ?? null,
    cluster_unlocked: view !== undefined && view.leader === undefined,
    dcs_last_seen: Math.floor(s.lastLoopAtMs / 1000),
    tags: s.identity.tags,
    warden: {
      name: s.identity.name,
      isLeader: s.isLeader,
      reason: s.reason,
      state: s.state,
      walPosition: st === undefined ? undefined : formatLsn(st.walPosition),
      tags: s.identity.tags,
      dcsError: s.dcsError,
      leaseRemainingMs: s.leaseDeadlineMs === undefined ? null : Math.max(0, s.leaseDeadlineMs - Date.now()),
      // The TTL in force (a `ttl` change is applied by moving to a new lease): what etcd granted.
      leaseTtlMs: s.leaseTtlMs ?? null,
      ...(s.configProblem === undefined ? {} : { configProblem: s.configProblem }),
      ...(s.movedAside === undefined || s.movedAside.length === 0 ? {} : { movedAside: s.movedAside }),
      ...(s.archive === undefined ? {} : { archive: s.archive }),
    },
  };
  if (st !== undefined) {
    body.timeline = st.timeline;
    body.xlog = st.inRecovery
      ? { received_location: Number(st.receiveLsn ?? st.walPosition), replayed_location: Number(st.replayLsn ?? st.walPosition), paused: false }
      : { location: Number(st.walPosition) };
    if (!st.inRecovery && st.replicas !== undefined) {
      body.replication = st.replicas.map((r) => ({ application_name: r.applicationName, state: r.state, sync_state: r.syncState }));
    }
  }
  if (view?.config.pause === true) body.pause = true;
  if (st?.pendingRestart === true) body.pending_restart = true;
  const sr = s.scheduledRestart;
  if (sr !== undefined) {
    body.scheduled_restart = {
      schedule: new Date(sr.atMs).toISOString(),
      ...(sr.role === undefined ? {} : { role: sr.role }),
      ...(sr.restartPending === undefined ? {} : { restart_pending: sr.restartPending }),
    };
  }
  return body;
}

/** GET /cluster in Patroni's shape. */
export function clusterStatus(s: AgentSnapshot): Record<string, unknown> {
  const view = s.view;
  const leaderLsn = view?.status?.lsn;
  const members = [...(view?.members.values() ?? [])]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => {
      const isLeader = view?.leader?.name === m.name;
      const pos = m.walPosition;
      const lag = !isLeader && pos !== undefined && leaderLsn !== undefined ? lagBytes(leaderLsn, parseLsnSafe(pos)) : undefined;
      return {
        name: m.name,
        role: isLeader ? 'leader' : 'replica',
        state: m.state,
        api_url: m.apiUrl,
        host: m.host,
        port: m.port,
        timeline: m.timeline,
        ...(lag === undefined ? {} : { lag }),
        tags: m.tags,
        reason: m.reason,
      };
    });
  return { scope: s.identity.cluster, members, ...(view?.config.pause ? { pause: true } : {}) };
}

function parseLsnSafe(text: string): bigint {
  const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(text);
  return m ? (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`) : 0n;
}

/**
 * The agent's REST API with Patroni's paths and status codes, so that HAProxy checks and probes
 * written for Patroni work unchanged (docs/architecture.md, 'Interfaces other tools rely on'). Health endpoints answer GET, HEAD and OPTIONS.
 */
export function createRestApi(snapshot: () => PublishedSnapshot, metrics: Registry, ops?: OperationsDeps): HttpApp {
  const app = new HttpApp();
  if (ops !== undefined) addOperationRoutes(app, ops);

  const health = (path: string, check: (s: AgentSnapshot, req: HttpRequest) => boolean): void => {
    const handler = (req: HttpRequest): HttpReply => {
      const s = snapshot();
      const ok = check(s, req);
      if (req.method === 'HEAD' || req.method === 'OPTIONS') return emptyReply(ok ? 200 : 503);
      return jsonReply(patroniStatus(s), ok ? 200 : 503);
    };
    app.on(['GET', 'HEAD', 'OPTIONS'], path, handler);
  };

  const isPrimary = (s: AgentSnapshot): boolean => s.isLeader && s.pg?.process === 'running' && s.status !== undefined && !s.status.inRecovery;
  const isReplica = (s: AgentSnapshot, req: HttpRequest): boolean => {
    if (s.pg?.process !== 'running' || s.status === undefined || !s.status.inRecovery) return false;
    if (s.identity.tags.noloadbalance) return false;
    const lagParam = req.query.get('lag') ?? undefined;
    if (lagParam !== undefined) {
      const max = parseLagParam(lagParam);
      const leaderLsn = s.view?.status?.lsn;
      if (max === undefined) return false;
      if (leaderLsn !== undefined && lagBytes(leaderLsn, s.status.walPosition) > max) return false;
    }
    return true;
  };

  for (const p of ['/', '/primary', '/leader', '/master', '/read-write']) health(p, isPrimary);
  health('/replica', isReplica);
  health('/read-only', (s, req) => isPrimary(s) || isReplica(s, req));
  health('/health', (s) => s.pg?.process === 'running' && s.status !== undefined);
  health('/liveness', (s) => isAlive(s));
  health('/readiness', (s) => (isPrimary(s) || (s.status?.inRecovery === true && s.pg?.process === 'running')));

  app.get('/patroni', () => jsonReply(patroniStatus(snapshot())));
  app.get('/cluster', () => jsonReply(clusterStatus(snapshot())));
  app.get('/history', () => {
    const h = snapshot().view?.history ?? [];
    return jsonReply(h.map((e) => [e.timeline - 1, Number(parseLsnSafe(e.lsn)), e.reason, new Date(e.timeMs).toISOString(), e.leader]));
  });
  app.get('/config', () => {
    const v = snapshot().view;
    if (v === undefined) return jsonReply({ error: 'the DCS has not been read yet' }, 503);
    return jsonReply(v.config);
  });
  app.get('/metrics', async () => textReply(await metrics.metrics(), 200, { 'content-type': metrics.contentType }));
  return app;
}

/** Parses Patroni's lag parameter: bytes, or with a unit (16kB, 1MB, 1GB). */
export function parseLagParam(text: string): number | undefined {
  const m = /^(\d+)\s*(B|kB|KB|MB|GB|TB)?$/.exec(text.trim());
  if (!m || m[1] === undefined) return undefined;
  const mult: Record<string, number> = { B: 1, kB: 1024, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
  return Number(m[1]) * (mult[m[2] ?? 'B'] ?? 1);
}
