import http from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { WardenError } from '../core/errors.js';
import type { CallOptions, Dcs, KeyValue, LeaseGrant, Snapshot, WatchEvent, WriteOptions } from './dcs.js';

type Json = Record<string, unknown>;

/** Why one HTTP exchange with one endpoint failed; `sent` means etcd may have received the request. */
class AttemptFailure extends Error {
  constructor(
    readonly reason: 'network' | 'timeout' | 'aborted' | 'stream',
    readonly sent: boolean,
    override readonly cause?: unknown,
  ) {
    super(`etcd request failed (${reason})`);
  }
}

interface SendOptions {
  /** The caller's signal and the call's deadline: any of them aborting ends the call. */
  readonly signals: readonly AbortSignal[];
  readonly deadlineMs: number;
  /** Safe to repeat on another endpoint after etcd may have applied it (reads, put, lease calls). */
  readonly idempotent: boolean;
  /** Stream mode (watch): gets each chunk of a 200 response; the attempt has no time bound once answered. */
  readonly onChunk?: (chunk: Buffer) => void;
  /** etcd auth token, sent as the Authorization header (the gateway passes it on as gRPC metadata). */
  readonly token?: string;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (v: unknown): string => (typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : '');

/** The base64 end of etcd's key range holding every key that starts with `prefix` (last byte + 1). */
export function prefixRangeEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i] = bytes[i]! + 1;
      return end.toString('base64');
    }
  }
  return 'AA=='; // "\0": every key from `prefix` on
}

/** A decimal int64 from the gateway (strings; omitted when zero). */
function int(v: unknown, field: string): number {
  if (v === undefined) return 0;
  const n = typeof v === 'string' || typeof v === 'number' ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw badResponse(`field ${field} is not an integer: ${JSON.stringify(v)}`);
  return n;
}

/** An int64 id kept as its decimal string (lease ids exceed 2^53); '0' when omitted. */
function id(v: unknown, field: string): string {
  if (v === undefined) return '0';
  const s = typeof v === 'number' ? String(v) : v;
  if (typeof s !== 'string' || !/^-?\d+$/.test(s)) throw badResponse(`field ${field} is not an int64: ${JSON.stringify(v)}`);
  return s;
}

function obj(v: unknown, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badResponse(`${what} is not an object`);
  return v as Json;
}

function badResponse(message: string, details: Record<string, unknown> = {}): WardenError {
  return new WardenError('dcs-bad-response', `etcd: ${message}`, { details });
}

function toKeyValue(v: unknown): KeyValue {
  const kv = obj(v, 'kv');
  return {
    key: unb64(kv['key']),
    value: unb64(kv['value']),
    createRevision: int(kv['create_revision'], 'create_revision'),
    modRevision: int(kv['mod_revision'], 'mod_revision'),
    version: int(kv['version'], 'version'),
    lease: id(kv['lease'], 'lease'),
  };
}

const headerRevision = (res: Json): number => int(obj(res['header'], 'header')['revision'], 'header.revision');

/** Turns a gateway error answer (`{ error, code, message }`) into a WardenError. */
function errorFromAnswer(status: number, text: string, endpoint: string): WardenError {
  let body: Json = {};
  try {
    body = obj(JSON.parse(text), 'error body');
  } catch {
    // Not JSON (a proxy, or a dying server): the raw text becomes the message.
  }
  return errorFromBody(status, body['code'], textOf(body['message'] ?? body['error'], text.slice(0, 300)), endpoint);
}

/** A stream message's `{ error: { grpc_code, http_code, message } }` as a WardenError. */
function errorFromStream(error: unknown, endpoint: string): WardenError {
  const e = typeof error === 'object' && error !== null ? (error as Json) : {};
  return errorFromBody(Number(e['http_code'] ?? 0), e['grpc_code'], textOf(e['message'], JSON.stringify(error)), endpoint);
}

function errorFromBody(status: number, grpcCode: unknown, message: string, endpoint: string): WardenError {
  const details = { endpoint, status, grpcCode, message };
  if (message.includes('lease not found')) return new WardenError('lease-not-found', `etcd: ${message}`, { details });
  if (grpcCode === 14 || status === 503) {
    return new WardenError('dcs-unavailable', `etcd ${endpoint}: ${message}`, { retryable: true, details });
  }
  if (grpcCode === 4 || status === 504) {
    return new WardenError('dcs-timeout', `etcd ${endpoint}: ${message}`, { retryable: true, details });
  }
  return badResponse(`${endpoint} answered ${status}: ${message}`, details);
}

/** TLS towards etcd (`https://` endpoints): the CA that signed etcd's certificate, and a client certificate. PEM texts. */
export interface EtcdTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** etcd's user authentication: the client authenticates once and sends the token with every call. */
export interface EtcdAuth {
  readonly username: string;
  readonly password: string;
}

/** How to reach etcd: endpoints, and TLS and authentication as production etcd runs them. */
export interface EtcdConnection {
  readonly endpoints: readonly string[];
  readonly tls?: EtcdTls;
  readonly auth?: EtcdAuth;
}

/** gRPC code 16 (UNAUTHENTICATED) or the messages etcd uses for a token it no longer knows. */
function isAuthFailure(e: WardenError): boolean {
  const d = e.details as { grpcCode?: unknown; status?: unknown; message?: unknown };
  const message = typeof d.message === 'string' ? d.message : e.message;
  return d.grpcCode === 16 || d.status === 401 || /invalid auth token|user name is empty|token is expired/.test(message);
}

/** The Dcs port on etcd's v3 JSON gateway, failing over between endpoints within each call's deadline. */
export class EtcdClient implements Dcs {
  private readonly endpoints: readonly string[];
  private readonly defaultTimeoutMs: number;
  private readonly agent: http.Agent;
  private readonly auth: EtcdAuth | undefined;
  /** The token of the last authentication, and the one in flight (one at a time). */
  private token: string | undefined;
  private authenticating: Promise<string> | undefined;
  /** Fails every exchange in flight; `close()` uses it. */
  private readonly inFlight = new Set<() => void>();
  private closed = false;
  private preferred = 0;

  constructor(opts: { endpoints: readonly string[]; defaultTimeoutMs: number; tls?: EtcdTls; auth?: EtcdAuth }) {
    if (opts.endpoints.length === 0) throw new WardenError('config-invalid', 'EtcdClient needs at least one endpoint');
    this.endpoints = opts.endpoints.map((e) => e.replace(/\/+$/, ''));
    const schemes = new Set(this.endpoints.map((e) => new URL(e).protocol));
    if (schemes.size > 1) throw new WardenError('config-invalid', `etcd endpoints mix http and https: ${this.endpoints.join(', ')}`);
    this.defaultTimeoutMs = opts.defaultTimeoutMs;
    const t = opts.tls ?? {};
    this.agent = schemes.has('https:')
      ? new https.Agent({ keepAlive: true, ...(t.ca === undefined ? {} : { ca: t.ca }), ...(t.cert === undefined ? {} : { cert: t.cert }), ...(t.key === undefined ? {} : { key: t.key }) })
      : new http.Agent({ keepAlive: true });
    this.auth = opts.auth;
  }

  /**
   * A token for the configured user: authenticates (once for all concurrent callers) when none is
   * held or `stale` is the token etcd just refused. Bounded by the caller's deadline.
   */
  private async tokenFor(stale: string | undefined, opts: CallOptions | undefined): Promise<string | undefined> {
    const auth = this.auth;
    if (auth === undefined) return undefined;
    if (this.token !== undefined && this.token !== stale) return this.token;
    this.authenticating ??= (async () => {
      try {
        const res = await this.callRaw('/v3/auth/authenticate', { name: auth.username, password: auth.password }, opts, true, undefined);
        const token = res['token'];
        if (typeof token !== 'string' || token === '') throw badResponse('authenticate answered without a token');
        this.token = token;
        return token;
      } catch (e) {
        if (e instanceof WardenError && e.code === 'dcs-bad-response') {
          throw new WardenError('dcs-auth-failed', `etcd: authentication as ${auth.username} failed: ${e.message.replace(/^etcd: /, '')}`, { cause: e });
        }
        throw e;
      } finally {
        this.authenticating = undefined;
      }
    })();
    return this.authenticating;
  }

  /** The endpoint the next call tries first (the one that answered last). */
  get preferredEndpoint(): string {
    return this.endpoints[this.preferred]!;
  }

  async range(prefix: string, opts?: CallOptions): Promise<Snapshot> {
    const res = await this.call('/v3/kv/range', { key: b64(prefix), range_end: prefixRangeEnd(prefix) }, opts, true);
    const kvs = res['kvs'] === undefined ? [] : res['kvs'];
    if (!Array.isArray(kvs)) throw badResponse('range kvs is not an array');
    return { revision: headerRevision(res), kvs: kvs.map(toKeyValue) };
  }

  async get(key: string, opts?: CallOptions): Promise<KeyValue | undefined> {
    const res = await this.call('/v3/kv/range', { key: b64(key) }, opts, true);
    const kvs = res['kvs'];
    return Array.isArray(kvs) && kvs.length > 0 ? toKeyValue(kvs[0]) : undefined;
  }

  async put(key: string, value: string, opts?: WriteOptions): Promise<number> {
    return headerRevision(await this.call('/v3/kv/put', putRequest(key, value, opts), opts, true));
  }

  async create(key: string, value: string, opts?: WriteOptions): Promise<boolean> {
    const compare = { key: b64(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' };
    return (await this.txn(compare, { request_put: putRequest(key, value, opts) }, opts)).succeeded;
  }

  async compareAndSwap(key: string, value: string, expectModRevision: number, opts?: WriteOptions): Promise<boolean> {
    const compare = { key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: String(expectModRevision) };
    return (await this.txn(compare, { request_put: putRequest(key, value, opts) }, opts)).succeeded;
  }

  async delete(key: string, opts?: CallOptions & { expectModRevision?: number }): Promise<boolean> {
    if (opts?.expectModRevision === undefined) {
      const res = await this.call('/v3/kv/deleterange', { key: b64(key) }, opts, false);
      return int(res['deleted'], 'deleted') > 0;
    }
    const compare = { key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: String(opts.expectModRevision) };
    const { succeeded, responses } = await this.txn(compare, { request_delete_range: { key: b64(key) } }, opts);
    const deleted = succeeded ? obj(responses[0], 'txn response')['response_delete_range'] : undefined;
    return deleted !== undefined && int(obj(deleted, 'response_delete_range')['deleted'], 'deleted') > 0;
  }

  async grantLease(ttlMs: number, opts?: CallOptions): Promise<LeaseGrant> {
    const res = await this.call('/v3/lease/grant', { TTL: String(Math.max(1, Math.ceil(ttlMs / 1000))) }, opts, true);
    if (typeof res['error'] === 'string' && res['error'] !== '') throw badResponse(`lease grant: ${res['error']}`);
    return { id: id(res['ID'], 'ID'), ttlMs: int(res['TTL'], 'TTL') * 1000 };
  }

  async keepAlive(leaseId: string, opts?: CallOptions): Promise<{ ttlMs: number }> {
    const res = await this.call('/v3/lease/keepalive', { ID: leaseId }, opts, true);
    if (res['error'] !== undefined) throw errorFromStream(res['error'], this.preferredEndpoint);
    // The gateway omits TTL 0, which is how etcd says the lease no longer exists.
    const ttlSeconds = int(obj(res['result'], 'keepalive result')['TTL'], 'TTL');
    if (ttlSeconds <= 0) throw new WardenError('lease-not-found', `etcd: lease ${leaseId} has expired or was revoked`);
    return { ttlMs: ttlSeconds * 1000 };
  }

  /** Revokes `leaseId`; a lease that is already gone counts as revoked. */
  async revokeLease(leaseId: string, opts?: CallOptions): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', { ID: leaseId }, opts, true);
    } catch (e) {
      if (!(e instanceof WardenError && e.code === 'lease-not-found')) throw e;
    }
  }

  /**
   * Turns on etcd's authentication, as a cluster admin would (idempotent: what exists is kept):
   * a root user (which etcd requires), and `user` with a role that may read and write `prefix` and
   * nothing else. Call it on an etcd without auth; after it, clients need credentials.
   */
  async enableAuthentication(opts: { rootPassword: string; user: EtcdAuth; prefix: string }, callOpts?: CallOptions): Promise<void> {
    const tolerate = async (path: string, body: Json, exists: RegExp): Promise<void> => {
      try {
        await this.call(path, body, callOpts, false);
      } catch (e) {
        if (!(e instanceof WardenError && exists.test(e.message))) throw e;
      }
    };
    const role = `${opts.user.username}-rw`;
    await tolerate('/v3/auth/role/add', { name: 'root' }, /role name already exists/);
    await tolerate('/v3/auth/user/add', { name: 'root', password: opts.rootPassword }, /user name already exists/);
    await tolerate('/v3/auth/user/grant', { user: 'root', role: 'root' }, /already granted/);
    await tolerate('/v3/auth/role/add', { name: role }, /role name already exists/);
    await this.call('/v3/auth/role/grant', { name: role, perm: { permType: 'READWRITE', key: b64(opts.prefix), range_end: prefixRangeEnd(opts.prefix) } }, callOpts, true);
    await tolerate('/v3/auth/user/add', { name: opts.user.username, password: opts.user.password }, /user name already exists/);
    await tolerate('/v3/auth/user/grant', { user: opts.user.username, role }, /already granted/);
    await this.call('/v3/auth/enable', {}, callOpts, true);
  }

  /** Turns etcd's authentication off (needs root); every token etcd issued becomes invalid. */
  async disableAuthentication(callOpts?: CallOptions): Promise<void> {
    await this.call('/v3/auth/disable', {}, callOpts, true);
  }

  async watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: readonly WatchEvent[], revision: number) => void,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    // The deadline only covers getting the watch created; the stream then lives until `signal` aborts.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.defaultTimeoutMs);
    const decoder = new StringDecoder('utf8');
    let pending = '';
    const onLine = (line: string): void => {
      const msg = obj(JSON.parse(line), 'watch message');
      if (msg['error'] !== undefined) throw errorFromStream(msg['error'], this.preferredEndpoint);
      const result = obj(msg['result'], 'watch result');
      const compactRevision = int(result['compact_revision'], 'compact_revision');
      if (result['canceled'] === true || compactRevision > 0) {
        const message = compactRevision > 0 ? `compacted at revision ${compactRevision}` : textOf(result['cancel_reason'], 'canceled');
        throw new WardenError('dcs-unavailable', `etcd watch on ${prefix} from ${fromRevision} ended: ${message}`, {
          retryable: true,
          details: { prefix, fromRevision, compactRevision, cancelReason: result['cancel_reason'] },
        });
      }
      if (result['created'] === true) clearTimeout(timer);
      const events = result['events'];
      if (Array.isArray(events) && events.length > 0) {
        onEvents(
          events.map((e): WatchEvent => {
            const ev = obj(e, 'watch event');
            return { type: ev['type'] === 'DELETE' ? 'delete' : 'put', kv: toKeyValue(ev['kv']) };
          }),
          headerRevision(result),
        );
      }
    };
    const onChunk = (chunk: Buffer): void => {
      if (signal.aborted) return;
      pending += decoder.write(chunk);
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line !== '') onLine(line);
      }
    };
    const body = {
      create_request: { key: b64(prefix), range_end: prefixRangeEnd(prefix), start_revision: String(fromRevision) },
    };
    try {
      const token = await this.tokenFor(undefined, { timeoutMs: this.defaultTimeoutMs, signal });
      await this.send('/v3/watch', body, {
        signals: [signal, deadline.signal],
        deadlineMs: Date.now() + this.defaultTimeoutMs,
        idempotent: false,
        onChunk,
        ...(token === undefined ? {} : { token }),
      });
    } catch (e) {
      if (signal.aborted && !this.closed) return;
      // A refused token ends the stream; the caller's next watch authenticates again.
      if (e instanceof WardenError && isAuthFailure(e)) this.token = undefined;
      throw e;
    } finally {
      clearTimeout(timer);
    }
    if (signal.aborted) return;
    throw new WardenError('dcs-unavailable', `etcd watch stream on ${prefix} ended`, { retryable: true });
  }

  close(): void {
    this.closed = true;
    for (const abort of this.inFlight) abort();
    this.agent.destroy();
  }

  private async txn(compare: Json, success: Json, opts: CallOptions | undefined): Promise<{ succeeded: boolean; responses: unknown[] }> {
    // A conditional write is not repeated once etcd may have applied it: the repeat would report a false "lost".
    const res = await this.call('/v3/kv/txn', { compare: [compare], success: [success] }, opts, false);
    const responses = res['responses'];
    return { succeeded: res['succeeded'] === true, responses: Array.isArray(responses) ? responses : [] };
  }

  /**
   * One call with the auth token when authentication is configured; a token etcd refuses (it
   * expired, or etcd restarted) is renewed once and the call repeated.
   */
  private async call(path: string, body: Json, opts: CallOptions | undefined, idempotent: boolean): Promise<Json> {
    const token = await this.tokenFor(undefined, opts);
    try {
      return await this.callRaw(path, body, opts, idempotent, token);
    } catch (e) {
      if (token === undefined || !(e instanceof WardenError) || !isAuthFailure(e)) throw e;
      return this.callRaw(path, body, opts, idempotent, await this.tokenFor(token, opts));
    }
  }

  /** One call bounded by `timeoutMs` (default `defaultTimeoutMs`) and `signal`; returns the parsed answer. */
  private async callRaw(path: string, body: Json, opts: CallOptions | undefined, idempotent: boolean, token: string | undefined): Promise<Json> {
    const timeoutMs = opts?.timeoutMs ?? this.defaultTimeoutMs;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    let text: string;
    try {
      const signals = opts?.signal ? [opts.signal, deadline.signal] : [deadline.signal];
      text = await this.send(path, body, { signals, deadlineMs: Date.now() + timeoutMs, idempotent, ...(token === undefined ? {} : { token }) });
    } finally {
      clearTimeout(timer);
    }
    try {
      return obj(JSON.parse(text), 'answer');
    } catch (e) {
      throw e instanceof WardenError ? e : badResponse(`${path} answered invalid JSON`, { text: text.slice(0, 300) });
    }
  }

  /**
   * Tries each endpoint once, starting with the one that answered last (which gets 60 % of the time);
   * the others share what remains, so a dead or hung first endpoint still leaves time for them.
   */
  private async send(path: string, body: Json, o: SendOptions): Promise<string> {
    const n = this.endpoints.length;
    const start = this.preferred;
    let last: unknown;
    let timedOut = false;
    const aborted = (): boolean => this.closed || o.signals.some((s) => s.aborted);
    for (let i = 0; i < n && !aborted(); i++) {
      const index = (start + i) % n;
      const endpoint = this.endpoints[index]!;
      // The endpoint that answered last is most likely healthy and merely slow under load: it gets
      // the larger part of the time; the others split what is left if it is dead or hung.
      const remaining = o.deadlineMs - Date.now();
      const shareMs = Math.max(1, i === 0 && n > 1 ? remaining * 0.6 : remaining / (n - i));
      try {
        const { status, text } = await this.exchange(endpoint, path, body, o, shareMs);
        if (status === 200) {
          this.preferred = index;
          return text;
        }
        const err = errorFromAnswer(status, text, endpoint);
        if (!err.retryable || !o.idempotent) throw err;
        last = err;
      } catch (e) {
        if (!(e instanceof AttemptFailure)) throw e;
        if (e.reason === 'stream') throw e.cause;
        last = e.cause ?? e;
        timedOut = e.reason === 'timeout';
        if (e.sent && !o.idempotent && !aborted()) {
          throw new WardenError('dcs-unavailable', `etcd ${endpoint}${path}: connection lost after the request was sent`, {
            retryable: true,
            cause: last,
            details: { endpoint, path, ambiguous: true },
          });
        }
      }
      if (this.preferred === index) this.preferred = (index + 1) % n;
    }
    if (this.closed) throw new WardenError('dcs-unavailable', 'etcd client is closed', { retryable: true });
    const details = { endpoints: this.endpoints, path };
    if (aborted() || timedOut) {
      throw new WardenError('dcs-timeout', `etcd ${path}: no answer in time`, { retryable: true, cause: last, details });
    }
    throw new WardenError('dcs-unavailable', `etcd ${path}: no endpoint answered`, { retryable: true, cause: last, details });
  }

  /** One HTTP POST to one endpoint; rejects with AttemptFailure. */
  private exchange(endpoint: string, path: string, body: Json, o: SendOptions, shareMs: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const payload = JSON.stringify(body);
      let connected = false;
      let settled = false;
      const url = `${endpoint}${path}`;
      const options = {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...(o.token === undefined ? {} : { authorization: o.token }) },
      };
      const req = url.startsWith('https:') ? https.request(url, options) : http.request(url, options);
      // Until connected, and for a whole idempotent exchange, the attempt only has its share of the time.
      const shareTimer = setTimeout(() => {
        if (!connected || (o.idempotent && o.onChunk === undefined)) fail('timeout');
      }, shareMs);
      const onAbort = (): void => fail('aborted');
      for (const s of o.signals) s.addEventListener('abort', onAbort, { once: true });
      this.inFlight.add(onAbort);
      const finish = (): void => {
        settled = true;
        clearTimeout(shareTimer);
        for (const s of o.signals) s.removeEventListener('abort', onAbort);
        this.inFlight.delete(onAbort);
      };
      function fail(reason: AttemptFailure['reason'], cause?: unknown): void {
        if (settled) return;
        finish();
        req.destroy();
        reject(new AttemptFailure(reason, connected, cause));
      }
      req.on('socket', (socket) => {
        if (!socket.connecting) connected = true;
        else socket.once('connect', () => (connected = true));
      });
      req.on('error', (e) => fail('network', e));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        const streaming = o.onChunk !== undefined && res.statusCode === 200;
        res.on('data', (chunk: Buffer) => {
          if (!streaming) return void chunks.push(chunk);
          try {
            o.onChunk?.(chunk);
          } catch (e) {
            fail('stream', e);
          }
        });
        res.on('error', (e) => fail('network', e));
        res.on('close', () => {
          if (!res.complete) return fail('network', new Error('connection closed mid-answer'));
          if (settled) return;
          finish();
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      });
      if (this.closed || o.signals.some((s) => s.aborted)) onAbort();
      else req.end(payload);
    });
  }
}

function putRequest(key: string, value: string, opts: WriteOptions | undefined): Json {
  return { key: b64(key), value: b64(value), ...(opts?.leaseId === undefined ? {} : { lease: opts.leaseId }) };
}

/** A JSON field as message text: strings as they are, anything else as JSON, `fallback` when absent. */
function textOf(v: unknown, fallback: string): string {
  if (v === undefined || v === null) return fallback;
  return typeof v === 'string' ? v : JSON.stringify(v);
}
