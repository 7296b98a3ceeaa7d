import { timingSafeEqual } from 'node:crypto';
import { emptyReply, jsonReply, textReply, type HttpApp, type HttpReply, type HttpRequest } from '../core/http-app.js';
import { describeError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import {
  clusterPrefix,
  KEYS,
  parseClusterView,
  parseRestartConditions,
  parseScheduledAt,
  restartBlocker,
  synchronousCountProblem,
  type ClusterView,
  type DynamicConfig,
  type FailoverRequest,
  type LocalOperation,
  type ScheduledRestart,
} from '../ha/index.js';
import { validateDynamicConfig } from '../spec/index.js';
import type { AgentSnapshot, OperationResult } from './agent.js';

/** What the operation endpoints need from the agent. */
export interface OperationsDeps {
  readonly snapshot: () => AgentSnapshot;
  readonly requestOperation: (op: LocalOperation, timeoutMs: number) => Promise<OperationResult>;
  readonly poke: () => void;
  readonly dcs: Dcs;
  readonly cluster: string;
  /** Basic-auth credentials for mutating endpoints; undefined leaves them open. */
  readonly auth?: { readonly username: string; readonly password: string };
  /** Mutating endpoints need a client certificate the CA verified (restapi.verify_client optional/required); 403 otherwise. */
  readonly requireClientCert?: boolean;
  /** Addresses (IP or CIDR) allowed to call mutating endpoints (403 otherwise). */
  readonly allowlist?: readonly string[];
  /** Schedules a restart (POST /restart with `schedule`); absent: scheduling is refused with 503. */
  readonly scheduleRestart?: (s: ScheduledRestart) => { ok: true } | { ok: false; conflict: string };
  /** Cancels the scheduled restart (DELETE /restart); returns it, or undefined when there was none. */
  readonly cancelScheduledRestart?: () => ScheduledRestart | undefined;
  /** How long POST /switchover waits for the new leader. */
  readonly handoverTimeoutMs?: number;
}

/** True when `ip` is `entry` or inside the CIDR block `entry` (IPv4; IPv4-mapped IPv6 is unwrapped). */
export function addressMatches(ip: string, entry: string): boolean {
  const plain = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  const [base, bitsText] = entry.split('/');
  if (base === undefined) return false;
  if (bitsText === undefined) return plain === base || ip === base;
  const toInt = (a: string): number | undefined => {
    const parts = a.split('.').map(Number);
    return parts.length === 4 && parts.every((n) => Number.isInteger(n) && n >= 0 && n <= 255) ? parts.reduce((acc, n) => acc * 256 + n, 0) : undefined;
  };
  const a = toInt(plain);
  const b = toInt(base);
  const bits = Number(bitsText);
  if (a === undefined || b === undefined) return false;
  const size = 2 ** (32 - bits);
  return Math.floor(a / size) === Math.floor(b / size);
}

type Status = 200 | 202 | 400 | 401 | 403 | 404 | 409 | 412 | 422 | 503;

/** Patroni answers operations with a short text body and a status code; so do we. */
function answer(status: Status, message: string): HttpReply {
  return textReply(message, status);
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Reads the JSON body; undefined (and a 400 sent by the caller) when it is not a JSON object. */
async function jsonBody(req: HttpRequest): Promise<Record<string, unknown> | undefined> {
  const text = await req.text();
  if (text.trim() === '') return {};
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}


/**
 * Adds Patroni's operation endpoints: POST /switchover /failover /restart /reinitialize /reload,
 * PATCH/PUT /config, and the /synchronous and /asynchronous checks. Mutating calls need basic auth
 * when it is configured (401 otherwise); malformed bodies are 400, failed preconditions 412, a
 * request already in progress 409, a past schedule 422, a failed operation 503 — nothing changes
 * on any of them.
 */
export function addOperationRoutes(app: HttpApp, deps: OperationsDeps): void {
  const prefix = clusterPrefix(deps.cluster);
  const readView = async (): Promise<ClusterView> => {
    const snap = await deps.dcs.range(prefix, { timeoutMs: 2000 });
    return parseClusterView(prefix, snap.revision, snap.kvs);
  };

  app.guard((req) => {
    if (['GET', 'HEAD', 'OPTIONS'].includes(req.method)) return undefined;
    if (deps.requireClientCert === true && !req.clientCertVerified) return textReply('a client certificate signed by restapi.cafile is required for this call', 403);
    if (deps.allowlist !== undefined && deps.allowlist.length > 0) {
      const ip = req.remoteAddress ?? '';
      if (!deps.allowlist.some((entry) => addressMatches(ip, entry))) return textReply(`${ip || 'this address'} is not in restapi.allowlist`, 403);
    }
    if (deps.auth === undefined) return undefined;
    const header = req.header('authorization') ?? '';
    const m = /^Basic\s+(.+)$/i.exec(header);
    const decoded = m?.[1] === undefined ? '' : Buffer.from(m[1], 'base64').toString('utf8');
    const sep = decoded.indexOf(':');
    const ok = sep > 0 && safeEqual(decoded.slice(0, sep), deps.auth.username) && safeEqual(decoded.slice(sep + 1), deps.auth.password);
    if (!ok) {
      return textReply('authentication required', 401, { 'WWW-Authenticate': 'Basic realm="warden"' });
    }
    return undefined;
  });

  const handover = (kind: FailoverRequest['kind']) => async (req: HttpRequest): Promise<HttpReply> => {
    const body = await jsonBody(req);
    if (body === undefined) return answer(400, 'the body must be a JSON object');
    const leader = body.leader;
    const candidate = body.candidate;
    if ((leader !== undefined && typeof leader !== 'string') || (candidate !== undefined && typeof candidate !== 'string')) {
      return answer(400, 'leader and candidate must be member names (strings)');
    }
    if (kind === 'switchover' && leader === undefined) return answer(400, 'switchover needs "leader" (the current leader)');
    if (kind === 'failover' && candidate === undefined) return answer(400, 'failover needs "candidate"');
    let scheduledAtMs: number | undefined;
    if (body.scheduled_at !== undefined && body.scheduled_at !== null) {
      const t = parseScheduledAt(body.scheduled_at);
      if (typeof t === 'string') return answer(400, t);
      if (t < Date.now()) return answer(422, `cannot schedule a ${kind} in the past (${new Date(t).toISOString()})`);
      scheduledAtMs = t;
    }
    let view: ClusterView;
    try {
      view = await readView();
    } catch (e) {
      return answer(503, `cannot read the cluster from etcd: ${describeError(e)}`);
    }
    const current = view.leader?.name;
    if (kind === 'switchover' && current === undefined) return answer(503, 'no leader: a switchover needs one (use failover)');
    if (leader !== undefined && leader !== current) return answer(412, `leader name does not match: ${current ?? 'nobody'} is the leader, not ${leader}`);
    if (candidate !== undefined && !view.members.has(candidate)) return answer(412, `candidate ${candidate} is not a member of cluster ${deps.cluster}`);
    if (candidate !== undefined && candidate === current) return answer(412, `candidate ${candidate} is already the leader`);
    if (view.failover !== undefined) return answer(409, `a ${view.failover.kind} is already in progress (to ${view.failover.candidate ?? 'the best replica'})`);
    const request: FailoverRequest = {
      kind,
      ...(current === undefined ? {} : { leader: current }),
      ...(candidate === undefined ? {} : { candidate }),
      ...(scheduledAtMs === undefined ? {} : { scheduledAtMs }),
      requestedAtMs: Date.now(),
    };
    try {
      if (!(await deps.dcs.create(prefix + KEYS.failover, JSON.stringify(request), { timeoutMs: 2000 }))) {
        return answer(409, 'another switchover or failover was requested at the same moment');
      }
    } catch (e) {
      return answer(503, `cannot write the request to etcd: ${describeError(e)}`);
    }
    deps.poke();
    if (scheduledAtMs !== undefined) return answer(202, `${kind} scheduled at ${new Date(scheduledAtMs).toISOString()}`);
    const deadline = Date.now() + (deps.handoverTimeoutMs ?? 30_000);
    let lastReason = '';
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      let v: ClusterView;
      try {
        v = await readView();
      } catch {
        continue;
      }
      const now = v.leader?.name;
      const rec = now === undefined ? undefined : v.members.get(now);
      if (now !== undefined && now !== current && rec?.role === 'primary' && rec.state === 'running') {
        return answer(200, `Successfully ${kind === 'switchover' ? 'switched over' : 'failed over'} to "${now}"`);
      }
      const old = current === undefined ? undefined : v.members.get(current);
      if (old?.reason !== undefined) lastReason = `${old.reason.code}: ${old.reason.message}`;
      if (v.failover === undefined && now === current && current !== undefined) {
        return answer(412, `${kind} refused or failed, ${current} stays leader — ${lastReason}`);
      }
    }
    return answer(503, `${kind} did not complete within ${(deps.handoverTimeoutMs ?? 30_000) / 1000} s${lastReason === '' ? '' : ` (${lastReason})`}`);
  };
  app.post('/switchover', handover('switchover'));
  app.post('/failover', handover('failover'));

  app.post('/restart', async (req) => {
    const body = await jsonBody(req);
    if (body === undefined) return answer(400, 'the body must be a JSON object');
    const conditions = parseRestartConditions(body);
    if (typeof conditions === 'string') return answer(400, conditions);
    if (body.schedule !== undefined && body.schedule !== null) {
      const atMs = parseScheduledAt(body.schedule, 'schedule');
      if (typeof atMs === 'string') return answer(400, atMs);
      if (atMs < Date.now()) return answer(422, `cannot schedule a restart in the past (${new Date(atMs).toISOString()})`);
      if (deps.scheduleRestart === undefined) return answer(503, 'this agent cannot schedule restarts');
      const r = deps.scheduleRestart({ atMs, requestedAtMs: Date.now(), ...conditions });
      return r.ok ? answer(202, `restart scheduled at ${new Date(atMs).toISOString()}`) : answer(409, r.conflict);
    }
    const s = deps.snapshot();
    const blocker = restartBlocker(conditions, { role: s.isLeader ? 'primary' : 'replica', pendingRestart: s.status?.pendingRestart === true });
    if (blocker !== undefined) return answer(412, blocker);
    const r = await deps.requestOperation({ kind: 'restart' }, 120_000);
    return r.ok ? answer(200, 'restarted successfully') : answer(503, `restart failed: ${r.error ?? r.reason.message}`);
  });

  app.on(['DELETE'], '/restart', () => {
    const cancelled = deps.cancelScheduledRestart?.();
    return cancelled === undefined ? answer(404, 'no restart is scheduled') : answer(200, `scheduled restart at ${new Date(cancelled.atMs).toISOString()} cancelled`);
  });

  app.post('/reinitialize', async (req) => {
    const body = await jsonBody(req);
    if (body === undefined) return answer(400, 'the body must be a JSON object');
    const r = await deps.requestOperation({ kind: 'reinitialize' }, 60_000);
    return r.ok ? answer(200, 'reinitialize started') : answer(503, `reinitialize refused: ${r.error ?? r.reason.message}`);
  });

  app.post('/reload', async () => {
    const r = await deps.requestOperation({ kind: 'reload' }, 30_000);
    return r.ok ? answer(202, 'reloaded configuration') : answer(503, `reload failed: ${r.error ?? r.reason.message}`);
  });

  const writeConfig = (merge: boolean) => async (req: HttpRequest): Promise<HttpReply> => {
    const body = await jsonBody(req);
    if (body === undefined) return answer(400, 'the body must be a JSON object');
    let view: ClusterView;
    try {
      view = await readView();
    } catch (e) {
      return answer(503, `cannot read the cluster from etcd: ${describeError(e)}`);
    }
    const next = merge ? mergePatch(view.config, body) : body;
    const valid = validateDynamicConfig(next);
    if (!valid.ok) return answer(400, `invalid configuration: ${valid.errors.join('; ')}`);
    const tooMany = synchronousCountProblem(view.config, valid.config, view.members.size);
    if (tooMany !== undefined) return answer(400, `invalid configuration: ${tooMany}`);
    const text = JSON.stringify(valid.config);
    try {
      const ok =
        view.configModRevision === undefined
          ? await deps.dcs.create(prefix + KEYS.config, text, { timeoutMs: 2000 })
          : await deps.dcs.compareAndSwap(prefix + KEYS.config, text, view.configModRevision, { timeoutMs: 2000 });
      if (!ok) return answer(409, 'the configuration changed meanwhile: read it again and retry');
    } catch (e) {
      return answer(503, `cannot write the configuration: ${describeError(e)}`);
    }
    deps.poke();
    return jsonReply(valid.config, 200);
  };
  app.patch('/config', writeConfig(true));
  app.put('/config', writeConfig(false));

  // failsafe_mode: the leader, cut off from the DCS, asks whether this member is cut off too and
  // still follows it. Yes only when this member cannot reach the DCS itself — a member that can
  // would let the lease expire and race, so the old primary must not outlive its lease.
  app.post('/failsafe', async (req) => {
    const body = await jsonBody(req);
    if (body === undefined || typeof body.leader !== 'string') return answer(400, 'the body must be {"leader": "<name>"}');
    const s = deps.snapshot();
    if (s.dcsError === undefined) return answer(409, 'this member can reach the DCS: no failsafe');
    if (s.view?.leader?.name !== body.leader) return answer(409, `this member last saw ${s.view?.leader?.name ?? 'no leader'} as the leader, not ${body.leader}`);
    return answer(200, 'Accepted');
  });

  const syncCheck = (wantSync: boolean) => (req: HttpRequest): HttpReply => {
    const s = deps.snapshot();
    const replica = s.pg?.process === 'running' && s.status?.inRecovery === true;
    const inSync = s.view?.sync?.members.includes(s.identity.name) === true && s.view.config.synchronous_mode !== 'off';
    const ok = replica && inSync === wantSync;
    if (req.method !== 'GET') return emptyReply(ok ? 200 : 503);
    return jsonReply({ role: replica ? (inSync ? 'sync_standby' : 'replica') : s.role, sync: inSync }, ok ? 200 : 503);
  };
  for (const p of ['/synchronous', '/sync']) app.on(['GET', 'HEAD', 'OPTIONS'], p, syncCheck(true));
  for (const p of ['/asynchronous', '/async']) app.on(['GET', 'HEAD', 'OPTIONS'], p, syncCheck(false));
}

/** JSON merge patch (RFC 7386) of `patch` onto `base`: objects merge, null deletes, the rest replaces. */
export function mergePatch(base: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = typeof base === 'object' && base !== null && !Array.isArray(base) ? { ...(base as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The config as the DCS holds it, for diffs. */
export type { DynamicConfig };
