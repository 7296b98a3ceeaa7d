import net from 'node:net';
import { describeError } from '../core/errors.js';
import type { RouterLogger } from './cluster-source.js';
import { CANNOT_CONNECT_NOW, encodeErrorResponse, MAX_STARTUP_PACKET_BYTES, parseFirstPacket, refusalStep, TOO_MANY_CONNECTIONS, type PgError } from './pg-protocol.js';
import type { Backend, Routes } from './route-table.js';
import { adoptWithFixedBuffer, forwardChunk, READ_BUFFER_BYTES } from './splice.js';

/** The two client-facing ports. */
export type PortKind = 'rw' | 'ro';

/** How a held connection left the queue. */
export type HoldOutcome = 'routed' | 'refused' | 'client-closed' | 'garbage';

/** Why sessions were dropped. */
export type DropReason = 'leader-changed' | 'leader-lost' | 'leader-unconfirmed' | 'replica-removed' | 'router-stopped';

/** Why a connection was refused with an ErrorResponse (or closed). */
export type RefuseReason = 'hold-timeout' | 'queue-full' | 'garbage' | 'router-stopped';

/** Hooks for metrics; called synchronously on the proxy's hot paths, so they must be cheap. */
export interface ProxyObserver {
  holdEnded(port: PortKind, outcome: HoldOutcome, heldMs: number): void;
}

export interface ProxyOptions {
  readonly cluster: string;
  /** How long a new connection may wait for a backend before it is refused. */
  readonly holdTimeoutMs: number;
  /** At most this many connections wait at once (both ports); more are refused at once. */
  readonly maxHeld: number;
  /** Bound on one TCP connect to a backend; a failed connect is retried while the hold budget lasts. */
  readonly connectTimeoutMs: number;
  readonly log: RouterLogger;
  readonly observer?: ProxyObserver;
}

/** Bytes a client may send before a backend is chosen: a startup packet, or a TLS ClientHello, fits. */
export const MAX_BYTES_BEFORE_BACKEND = MAX_STARTUP_PACKET_BYTES + 8 * 1024;
/** A refused client has this long to send its startup packet before it is simply closed. */
const REFUSAL_READ_TIMEOUT_MS = 5_000;
/**
 * A new client has this long to send its first packet (startup, SSLRequest, GSSENCRequest or
 * CancelRequest) before it is closed. No backend is opened before that packet: idle sockets on the
 * router's ports must never use up the primary's connection slots.
 */
export const STARTUP_TIMEOUT_MS = 5_000;
/**
 * At most this many connections may be waiting for their first packet; past it the oldest is
 * closed. A real client sends its packet within milliseconds, so a flood of idle sockets evicts
 * itself and new clients still get through.
 */
export const MAX_AWAITING_STARTUP = 4096;
/** Pause before retrying a backend that refused the TCP connection. */
const CONNECT_RETRY_MS = 100;
/** A half-closed socket is destroyed after this long. */
const LINGER_MS = 5_000;

/** Per-backend counters, kept for metrics and GET /status. */
export interface BackendCounters {
  connectionsTotal: number;
  connectErrors: number;
  /** Bytes of finished sessions; live sessions are added at read time. */
  bytesFromClients: number;
  bytesToClients: number;
}

/** Counters of the whole proxy. */
export interface ProxyCounters {
  readonly backends: Map<string, { readonly port: PortKind; readonly backend: Backend; readonly c: BackendCounters }>;
  readonly dropped: Map<DropReason, number>;
  readonly refused: Map<RefuseReason, number>;
  /** Connections closed before their first packet: timed out, or evicted by newer ones. */
  readonly closedBeforeStartup: { timeout: number; evicted: number };
  accepted: { rw: number; ro: number };
}

/** A point-in-time view of the proxy for GET /status and metrics. */
export interface ProxyStats {
  readonly held: { readonly rw: number; readonly ro: number };
  readonly sessions: readonly { readonly port: PortKind; readonly backend: Backend; readonly active: number; readonly bytesFromClients: number; readonly bytesToClients: number; readonly connectionsTotal: number; readonly connectErrors: number }[];
  readonly dropped: Readonly<Record<string, number>>;
  readonly refused: Readonly<Record<string, number>>;
  readonly accepted: { readonly rw: number; readonly ro: number };
  readonly closedBeforeStartup: { readonly timeout: number; readonly evicted: number };
  readonly awaitingStartup: number;
}

const backendKey = (port: PortKind, b: Backend): string => `${port}/${b.name}@${b.host}:${b.port}`;
const sameBackend = (a: Backend | undefined, b: Backend | undefined): boolean =>
  a !== undefined && b !== undefined && a.name === b.name && a.host === b.host && a.port === b.port;

/**
 * The router's TCP side: a read-write and a read-only listener that splice each client to a backend
 * chosen from the current Routes. Connections arriving while no backend may be used are held (read
 * but not answered) and released in arrival order when one may; after holdTimeoutMs, or when
 * maxHeld are already waiting, they are refused with a PostgreSQL ErrorResponse. Every session to
 * a backend that leaves the routes is dropped at once (invariant 6 in docs/architecture.md). A client that
 * misbehaves before it has a backend costs only its own socket.
 */
export class TcpProxy {
  private routes: Routes = { rwOpen: false, ro: [] };
  private readonly servers = new Map<PortKind, net.Server>();
  private readonly held: { rw: ClientConnection[]; ro: ClientConnection[] } = { rw: [], ro: [] };
  private readonly sessions = new Set<ClientConnection>();
  /** Connections that have not sent their first packet yet, oldest first (a Set keeps insertion order). */
  private readonly awaiting = new Set<ClientConnection>();
  /** Sessions plus connects in flight, per backend key: what least-connections balances. */
  private readonly load = new Map<string, number>();
  private roCursor = 0;
  private stopped = false;
  readonly counters: ProxyCounters = { backends: new Map(), dropped: new Map(), refused: new Map(), closedBeforeStartup: { timeout: 0, evicted: 0 }, accepted: { rw: 0, ro: 0 } };

  constructor(readonly opts: ProxyOptions) {}

  /** Listens for one port kind; resolves with the bound address (port 0 picks a free one). */
  listen(port: PortKind, host: string, portNumber: number): Promise<net.AddressInfo> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(port, socket));
    this.servers.set(port, server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: portNumber, backlog: 4096 }, () => {
        server.off('error', reject);
        server.on('error', (e) => this.opts.log.error({ port, err: describeError(e) }, 'listener error'));
        resolve(server.address() as net.AddressInfo);
      });
    });
  }

  /** The routes in force. */
  currentRoutes(): Routes {
    return this.routes;
  }

  /** Applies new routes: drops sessions to backends that left them, then releases held connections. */
  setRoutes(next: Routes): void {
    const prev = this.routes;
    this.routes = next;
    if (prev.rw?.name !== next.rw?.name || prev.rwOpen !== next.rwOpen || prev.rwHeld?.code !== next.rwHeld?.code) {
      this.opts.log.info(
        { from: prev.rw?.name ?? null, to: next.rw?.name ?? null, open: next.rwOpen, held: next.rwHeld?.code ?? null, why: next.rwHeld?.message },
        next.rw === undefined ? 'no read-write backend' : next.rwOpen ? `read-write traffic goes to ${next.rw.name}` : `holding new read-write connections: ${next.rwHeld?.message ?? ''}`,
      );
    }
    for (const s of [...this.sessions]) {
      const target = s.target;
      if (target === undefined) continue;
      if (s.port === 'rw' && !sameBackend(target, next.rw)) {
        const reason: DropReason = next.rw !== undefined ? 'leader-changed' : next.rwHeld?.code === 'leader-unconfirmed' ? 'leader-unconfirmed' : 'leader-lost';
        this.drop(s, reason);
      } else if (s.port === 'ro' && !next.ro.some((b) => sameBackend(b, target))) {
        this.drop(s, 'replica-removed');
      }
    }
    this.release('rw');
    this.release('ro');
  }

  /** Numbers for GET /status and metrics. */
  stats(): ProxyStats {
    const live = new Map<string, { active: number; fromClients: number; toClients: number }>();
    for (const s of this.sessions) {
      if (s.target === undefined) continue;
      const k = backendKey(s.port, s.target);
      const e = live.get(k) ?? { active: 0, fromClients: 0, toClients: 0 };
      e.active++;
      e.fromClients += s.socket.bytesRead;
      e.toClients += s.socket.bytesWritten;
      live.set(k, e);
    }
    const sessions = [...this.counters.backends.entries()].map(([k, { port, backend, c }]) => {
      const l = live.get(k);
      return {
        port,
        backend,
        active: l?.active ?? 0,
        bytesFromClients: c.bytesFromClients + (l?.fromClients ?? 0),
        bytesToClients: c.bytesToClients + (l?.toClients ?? 0),
        connectionsTotal: c.connectionsTotal,
        connectErrors: c.connectErrors,
      };
    });
    return {
      held: { rw: this.held.rw.length, ro: this.held.ro.length },
      sessions,
      dropped: Object.fromEntries(this.counters.dropped),
      refused: Object.fromEntries(this.counters.refused),
      accepted: { ...this.counters.accepted },
      closedBeforeStartup: { ...this.counters.closedBeforeStartup },
      awaitingStartup: this.awaiting.size,
    };
  }

  /** Stops listening and closes every client connection and session. */
  async close(): Promise<void> {
    this.stopped = true;
    const closing = [...this.servers.values()].map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const port of ['rw', 'ro'] as const) {
      for (const c of this.held[port].splice(0)) c.refuse('router-stopped', this.stoppedError(port));
    }
    for (const s of [...this.sessions]) this.drop(s, 'router-stopped');
    for (const c of [...this.awaiting]) c.destroy();
    // Clients still being refused finish on their own timers; do not wait for them.
    await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
  }

  // ---- internals, called by ClientConnection ------------------------------------------------

  /** @internal */
  countersFor(port: PortKind, b: Backend): BackendCounters {
    const k = backendKey(port, b);
    let e = this.counters.backends.get(k);
    if (e === undefined) {
      e = { port, backend: b, c: { connectionsTotal: 0, connectErrors: 0, bytesFromClients: 0, bytesToClients: 0 } };
      this.counters.backends.set(k, e);
    }
    return e.c;
  }

  /** @internal The backend a new connection on `port` may use now, least-loaded first for ro. */
  pick(port: PortKind): Backend | undefined {
    if (this.stopped) return undefined;
    if (port === 'rw') return this.routes.rwOpen ? this.routes.rw : undefined;
    const ro = this.routes.ro;
    if (ro.length === 0) return undefined;
    let best: Backend | undefined;
    let bestLoad = Infinity;
    for (let i = 0; i < ro.length; i++) {
      const b = ro[(this.roCursor + i) % ro.length]!;
      const l = this.load.get(backendKey('ro', b)) ?? 0;
      if (l < bestLoad) {
        best = b;
        bestLoad = l;
      }
    }
    this.roCursor = (this.roCursor + 1) % ro.length;
    return best;
  }

  /** @internal True while `b` is still where `port` sends traffic (checked when a connect completes). */
  stillRoutes(port: PortKind, b: Backend): boolean {
    if (this.stopped) return false;
    return port === 'rw' ? sameBackend(this.routes.rw, b) : this.routes.ro.some((x) => sameBackend(x, b));
  }

  /** @internal */
  addLoad(port: PortKind, b: Backend, delta: number): void {
    const k = backendKey(port, b);
    const n = (this.load.get(k) ?? 0) + delta;
    if (n <= 0) this.load.delete(k);
    else this.load.set(k, n);
  }

  /** @internal Queues `c`; refuses it when the queue is full. */
  hold(c: ClientConnection): void {
    if (this.stopped) return c.refuse('router-stopped', this.stoppedError(c.port));
    if (this.held.rw.length + this.held.ro.length >= this.opts.maxHeld) {
      return c.refuse('queue-full', {
        severity: 'FATAL',
        code: TOO_MANY_CONNECTIONS,
        message: `warden router: too many connections waiting for a ${c.port === 'rw' ? 'primary' : 'replica'} of cluster ${this.opts.cluster} (maxHeld ${this.opts.maxHeld})`,
      });
    }
    this.held[c.port].push(c);
  }

  /** @internal */
  unhold(c: ClientConnection): void {
    const q = this.held[c.port];
    const i = q.indexOf(c);
    if (i >= 0) q.splice(i, 1);
  }

  /** @internal */
  sessionStarted(c: ClientConnection): void {
    this.sessions.add(c);
  }

  /** @internal */
  sessionEnded(c: ClientConnection): void {
    if (!this.sessions.delete(c) || c.target === undefined) return;
    const counters = this.countersFor(c.port, c.target);
    counters.bytesFromClients += c.socket.bytesRead;
    counters.bytesToClients += c.socket.bytesWritten;
  }

  /** @internal The error a client gets when its hold budget ran out. */
  holdTimeoutError(port: PortKind, heldMs: number): PgError {
    const seconds = Math.round(heldMs / 100) / 10;
    const what = port === 'rw' ? 'primary' : 'replica';
    const why = port === 'rw' ? this.routes.rwHeld?.message : 'no streaming replica within the lag limit';
    return {
      severity: 'FATAL',
      code: CANNOT_CONNECT_NOW,
      message: `warden router: no ${what} available for cluster ${this.opts.cluster} after ${seconds} s`,
      ...(why === undefined ? {} : { detail: why }),
    };
  }

  private stoppedError(port: PortKind): PgError {
    return { severity: 'FATAL', code: CANNOT_CONNECT_NOW, message: `warden router: shutting down (cluster ${this.opts.cluster}, ${port} port)` };
  }

  private accept(port: PortKind, socket: net.Socket): void {
    this.counters.accepted[port]++;
    if (this.stopped) return void socket.destroy();
    if (this.awaiting.size >= MAX_AWAITING_STARTUP) {
      const oldest = this.awaiting.values().next().value;
      if (oldest !== undefined) {
        this.counters.closedBeforeStartup.evicted++;
        oldest.destroy();
      }
    }
    const c = new ClientConnection(this, port, socket);
    this.awaiting.add(c);
    c.awaitFirstPacket();
  }

  /** @internal The connection sent its first packet, or closed. */
  firstPacketSeen(c: ClientConnection): void {
    this.awaiting.delete(c);
  }

  /** @internal */
  startupTimedOut(c: ClientConnection): void {
    this.counters.closedBeforeStartup.timeout++;
    c.destroy();
  }

  private release(port: PortKind): void {
    const q = this.held[port];
    while (q.length > 0 && this.pick(port) !== undefined) q.shift()?.dispatch();
  }

  private drop(s: ClientConnection, reason: DropReason): void {
    this.counters.dropped.set(reason, (this.counters.dropped.get(reason) ?? 0) + 1);
    s.destroy();
  }

  /** @internal */
  countRefusal(reason: RefuseReason): void {
    this.counters.refused.set(reason, (this.counters.refused.get(reason) ?? 0) + 1);
  }
}

type ConnState = 'startup' | 'new' | 'held' | 'connecting' | 'session' | 'refusing' | 'closed';

/** One client socket through its life: startup → held → connecting → session, or refused. */
class ClientConnection {
  state: ConnState = 'startup';
  private startupTimer: NodeJS.Timeout | undefined;
  target: Backend | undefined;
  private backend: net.Socket | undefined;
  /** True while this connection counts towards its target's load. */
  private loaded = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly arrivedAtMs = Date.now();
  private heldAtMs: number | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private refusalError: PgError | undefined;

  constructor(
    private readonly proxy: TcpProxy,
    readonly port: PortKind,
    public socket: net.Socket,
  ) {
    socket.on('data', (chunk: Buffer) => this.onClientData(chunk));
    this.listenToClient(socket);
  }

  private listenToClient(socket: net.Socket): void {
    socket.on('drain', () => this.backend?.resume());
    // Errors are followed by 'close'; a reset client is ordinary and costs only its own socket.
    socket.on('error', () => undefined);
    socket.on('end', () => {
      if (this.state === 'session') this.backend?.end();
    });
    socket.on('close', () => {
      if (this.socket === socket) this.onClientClose();
    });
  }

  /** Forwards what the client sent (fixed-buffer sessions). */
  private readonly fromClient = (n: number, buf: Uint8Array): boolean => {
    const b = this.backend;
    if (this.state !== 'session' || b === undefined) return true;
    return forwardChunk(buf, n, b, () => this.socket);
  };

  /** Forwards what the backend sent. */
  private fromBackend(backend: net.Socket, n: number, buf: Uint8Array): boolean {
    if (this.state !== 'session' || this.backend !== backend) return true;
    return forwardChunk(buf, n, this.socket, () => backend);
  }

  /** Waits (bounded) for the client's first packet before anything else happens. */
  awaitFirstPacket(): void {
    this.startupTimer = setTimeout(() => this.proxy.startupTimedOut(this), STARTUP_TIMEOUT_MS);
    this.startupTimer.unref();
  }

  private firstPacketArrived(): void {
    clearTimeout(this.startupTimer);
    this.proxy.firstPacketSeen(this);
    this.state = 'new';
    this.dispatch();
  }

  /** Sends the connection to a backend now, or holds it. */
  dispatch(): void {
    if (this.state !== 'new' && this.state !== 'held') return;
    const target = this.proxy.pick(this.port);
    if (target === undefined) return this.holdHere();
    this.connect(target);
  }

  /** Refuses with an ErrorResponse once the client has sent its startup packet (after 'N' to SSL/GSS requests). */
  refuse(reason: RefuseReason, error: PgError): void {
    if (this.state === 'closed' || this.state === 'refusing' || this.state === 'session') return;
    this.leaveQueue('refused');
    this.releaseBackend();
    this.proxy.countRefusal(reason);
    this.state = 'refusing';
    this.refusalError = error;
    setTimeout(() => this.destroy(), REFUSAL_READ_TIMEOUT_MS).unref();
    this.stepRefusal();
  }

  /** Closes the client and its backend at once (a dropped session, or a client that left). */
  destroy(): void {
    if (this.state === 'closed') return;
    if (this.state === 'startup') {
      clearTimeout(this.startupTimer);
      this.proxy.firstPacketSeen(this);
    }
    this.leaveQueue('client-closed');
    const wasSession = this.state === 'session';
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    this.socket.destroy();
    this.releaseBackend();
    if (wasSession) this.proxy.sessionEnded(this);
    this.pending = [];
  }

  private releaseBackend(): void {
    this.backend?.destroy();
    this.backend = undefined;
    this.unload();
  }

  private unload(): void {
    if (this.loaded && this.target !== undefined) this.proxy.addLoad(this.port, this.target, -1);
    this.loaded = false;
  }

  private holdHere(): void {
    if (this.heldAtMs === undefined) {
      this.heldAtMs = Date.now();
      const budgetMs = Math.max(0, this.proxy.opts.holdTimeoutMs - (Date.now() - this.arrivedAtMs));
      this.holdTimer = setTimeout(() => this.refuse('hold-timeout', this.proxy.holdTimeoutError(this.port, Date.now() - this.arrivedAtMs)), budgetMs);
    }
    this.state = 'held';
    this.proxy.hold(this);
  }

  /** Leaves the held queue (if in it) and records how the hold ended. */
  private leaveQueue(outcome: HoldOutcome): void {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (this.state === 'held') this.proxy.unhold(this);
    if (this.heldAtMs !== undefined) {
      this.proxy.opts.observer?.holdEnded(this.port, outcome, Date.now() - this.heldAtMs);
      this.heldAtMs = undefined;
    }
  }

  private connect(target: Backend): void {
    if (this.state === 'held') this.proxy.unhold(this);
    this.state = 'connecting';
    this.target = target;
    this.loaded = true;
    this.proxy.addLoad(this.port, target, 1);
    const counters = this.proxy.countersFor(this.port, target);
    const backend: net.Socket = net.connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      onread: { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n, buf) => this.fromBackend(backend, n, buf) },
    });
    this.backend = backend;
    const connectTimer = setTimeout(() => backend.destroy(new Error(`connect timeout after ${this.proxy.opts.connectTimeoutMs} ms`)), this.proxy.opts.connectTimeoutMs);
    backend.once('connect', () => {
      clearTimeout(connectTimer);
      if (this.backend !== backend || this.state !== 'connecting') return void backend.destroy();
      if (!this.proxy.stillRoutes(this.port, target)) {
        // The routes moved while we connected: never start a session on a backend that just left them.
        this.backendFailed(backend, target, undefined);
        return;
      }
      counters.connectionsTotal++;
      this.leaveQueue('routed');
      this.state = 'session';
      this.proxy.sessionStarted(this);
      for (const chunk of this.pending) backend.write(chunk);
      this.pending = [];
      this.pendingBytes = 0;
      // From now on the client's bytes are forwarded from a fixed buffer too (else by 'data' events).
      const adopted = adoptWithFixedBuffer(this.socket, Buffer.allocUnsafe(READ_BUFFER_BYTES), this.fromClient);
      if (adopted !== undefined) {
        this.socket = adopted;
        this.listenToClient(adopted);
      }
    });
    backend.on('drain', () => this.socket.resume());
    backend.on('end', () => {
      if (this.backend === backend && this.state === 'session') this.socket.end();
    });
    backend.on('error', (e) => {
      clearTimeout(connectTimer);
      if (this.backend === backend && this.state === 'connecting') {
        counters.connectErrors++;
        this.backendFailed(backend, target, e);
      }
    });
    backend.on('close', () => {
      clearTimeout(connectTimer);
      if (this.backend !== backend) return;
      if (this.state === 'session') {
        // The server went away: let what it sent last (often a FATAL message) reach the client.
        this.proxy.sessionEnded(this);
        this.unload();
        this.state = 'closed';
        this.socket.end();
        setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
      } else if (this.state === 'connecting') {
        this.backendFailed(backend, target, undefined);
      }
    });
  }

  /** A connect that failed (or became moot): retry within the hold budget, else refuse. */
  private backendFailed(backend: net.Socket, target: Backend, error: Error | undefined): void {
    if (this.backend !== backend || this.state !== 'connecting') return;
    this.releaseBackend();
    this.target = undefined;
    if (error !== undefined) this.proxy.opts.log.debug({ backend: target.name, err: describeError(error) }, 'backend connect failed');
    const elapsed = Date.now() - this.arrivedAtMs;
    if (elapsed >= this.proxy.opts.holdTimeoutMs) {
      this.state = 'held'; // so that refuse() records the hold
      this.refuse('hold-timeout', this.proxy.holdTimeoutError(this.port, elapsed));
      return;
    }
    this.holdHere();
    if ((this.state as ConnState) === 'held') {
      this.retryTimer = setTimeout(() => {
        if (this.state !== 'held') return;
        this.proxy.unhold(this);
        this.dispatch();
      }, CONNECT_RETRY_MS);
    }
  }

  private onClientData(chunk: Buffer): void {
    switch (this.state) {
      case 'startup': {
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        const p = parseFirstPacket(this.pendingBuffer());
        if (p.kind === 'invalid') return this.garbage(p.reason);
        if (p.kind !== 'incomplete') this.firstPacketArrived();
        else if (this.pendingBytes > MAX_BYTES_BEFORE_BACKEND) this.garbage(`sent ${this.pendingBytes} bytes without a complete first packet`);
        return;
      }
      case 'session':
        if (this.backend !== undefined && !this.backend.write(chunk)) this.socket.pause();
        return;
      case 'new':
      case 'held':
      case 'connecting':
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        if (this.pendingBytes > MAX_BYTES_BEFORE_BACKEND) return this.garbage(`sent ${this.pendingBytes} bytes before a backend was chosen`);
        if (this.state === 'held') {
          // Only held connections are inspected: a client that is not speaking PostgreSQL leaves now.
          const p = parseFirstPacket(this.pendingBuffer());
          if (p.kind === 'invalid') this.garbage(p.reason);
        }
        return;
      case 'refusing':
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        if (this.pendingBytes > MAX_BYTES_BEFORE_BACKEND) return this.destroy();
        this.stepRefusal();
        return;
      case 'closed':
        return;
    }
  }

  private garbage(reason: string): void {
    this.proxy.opts.log.debug({ port: this.port, remote: this.socket.remoteAddress, reason }, 'closing a client that is not speaking PostgreSQL');
    this.leaveQueue('garbage');
    this.proxy.countRefusal('garbage');
    this.destroy();
  }

  private pendingBuffer(): Buffer {
    if (this.pending.length > 1) this.pending = [Buffer.concat(this.pending)];
    return this.pending[0] ?? Buffer.alloc(0);
  }

  private stepRefusal(): void {
    for (;;) {
      if (this.state !== 'refusing') return;
      const buf = this.pendingBuffer();
      const step = refusalStep(buf);
      switch (step.action) {
        case 'wait':
          return;
        case 'decline-encryption':
          this.socket.write('N');
          this.pending = [buf.subarray(step.consumed)];
          this.pendingBytes = buf.length - step.consumed;
          continue;
        case 'send-error':
          this.state = 'closed';
          this.socket.end(encodeErrorResponse(this.refusalError!));
          setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
          return;
        case 'close':
          this.destroy();
          return;
      }
    }
  }

  private onClientClose(): void {
    if (this.state === 'closed') return;
    if (this.state === 'session') {
      // Let the client's last bytes (a Terminate message) reach the server, then close.
      const b = this.backend;
      this.proxy.sessionEnded(this);
      this.unload();
      this.state = 'closed';
      b?.end();
      if (b !== undefined) setTimeout(() => b.destroy(), LINGER_MS).unref();
      return;
    }
    this.destroy();
  }
}
