import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/**
 * A small HTTP layer over node:http for the agent's REST API and the router's admin API.
 *
 * Why not hono: on Node 20 hono (and @hono/node-server) need the web Request/Response globals, and
 * touching those loads undici, which compiles its WebAssembly HTTP parser at load: about 7 MB of RSS
 * in every agent, and WebAssembly rules out running the agent in V8's lite mode (another ~9 MB).
 * The agent's target is 60 MB; what these APIs need is exact-path routing, a text/JSON body, a few
 * headers and the peer's address, which fits in this file.
 */

export interface HttpRequest {
  /** Upper-case method. */
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** The caller's IP address (undefined for in-process requests without one). */
  readonly remoteAddress: string | undefined;
  /** True when the caller presented a client certificate that the server's CA verified (TLS only). */
  readonly clientCertVerified: boolean;
  /** A request header, case-insensitive. */
  header(name: string): string | undefined;
  /** The body as UTF-8 text (at most MAX_BODY_BYTES; a larger body is answered 413 before the handler runs). */
  text(): Promise<string>;
}

export interface HttpReply {
  readonly status: number;
  /** null: no body (health checks answering HEAD or OPTIONS). */
  readonly body: string | null;
  readonly headers?: Readonly<Record<string, string>>;
}

export type HttpHandler = (req: HttpRequest) => HttpReply | Promise<HttpReply>;
/** Runs before routing; returns a reply to answer at once, or undefined to go on. */
export type HttpGuard = (req: HttpRequest) => HttpReply | undefined | Promise<HttpReply | undefined>;

/**
 * TLS for a server: PEM texts. verifyClient: 'none' asks for no client certificate; 'required'
 * refuses the handshake without one signed by `ca`; 'optional' asks for one and lets the app decide
 * (HttpRequest.clientCertVerified) — the agent requires it for mutating calls only.
 */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
  readonly verifyClient: 'none' | 'optional' | 'required';
}

/** TLS for a client: the CA that signed the server's certificate, and a client certificate to present. */
export interface ClientTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** Largest request body read (the APIs take small JSON objects). */
export const MAX_BODY_BYTES = 1024 * 1024;

export function jsonReply(body: unknown, status = 200): HttpReply {
  return { status, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
}

export function textReply(body: string, status = 200, headers: Readonly<Record<string, string>> = {}): HttpReply {
  return { status, body, headers: { 'content-type': 'text/plain; charset=UTF-8', ...headers } };
}

export function emptyReply(status: number): HttpReply {
  return { status, body: null };
}

/** What `HttpApp.request` answers: enough of a fetch Response for in-process tests. */
export interface LocalResponse {
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: ReadonlyMap<string, string>;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

interface Route {
  readonly methods: ReadonlySet<string>;
  readonly path: string;
  readonly handler: HttpHandler;
}

class PayloadTooLarge extends Error {}

/** A request target split into path and query, or the reason it is not one this server answers. */
export type RequestTarget = { readonly ok: true; readonly path: string; readonly query: URLSearchParams } | { readonly ok: false; readonly error: string };

/**
 * Splits an HTTP/1.1 request target (RFC 9112 §3.2) without WHATWG URL resolution: origin-form
 * (`/path?query`) is taken as written, so `//evil/config` stays the path `//evil/config` (a 404)
 * instead of resolving to another host's `/config`; absolute-form (`http://host/path`) is accepted
 * as proxies send it; anything else (authority-form, `*`, garbage, control characters) is refused.
 * Never throws: a thrown TypeError here once killed the whole agent on one request.
 */
export function parseRequestTarget(raw: string | undefined): RequestTarget {
  const target = raw ?? '/';
  // eslint-disable-next-line no-control-regex
  if (target.length === 0 || /[\x00-\x20\x7f]/.test(target)) return { ok: false, error: 'malformed request target' };
  let pathAndQuery = target;
  if (!target.startsWith('/')) {
    const m = /^https?:\/\/[^/?#]*(.*)$/i.exec(target);
    if (m === null) return { ok: false, error: 'request target must be a path (origin-form) or an absolute http URL' };
    pathAndQuery = m[1] === undefined || m[1] === '' ? '/' : m[1];
    if (!pathAndQuery.startsWith('/')) pathAndQuery = `/${pathAndQuery}`;
  }
  const hash = pathAndQuery.indexOf('#');
  if (hash >= 0) pathAndQuery = pathAndQuery.slice(0, hash);
  const q = pathAndQuery.indexOf('?');
  const path = q >= 0 ? pathAndQuery.slice(0, q) : pathAndQuery;
  try {
    return { ok: true, path, query: new URLSearchParams(q >= 0 ? pathAndQuery.slice(q + 1) : '') };
  } catch {
    return { ok: false, error: 'malformed query string' };
  }
}

/** Bounds of a server made by `listen`. */
export interface ServerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  checkIntervalMs: number;
  maxConnections: number;
}

/**
 * Bounds every server made by `listen` has (hardening: idle sockets must not pile up until the
 * process runs out of file descriptors). Requests here are small and answered at once.
 */
export const SERVER_LIMITS: Readonly<ServerLimits> = {
  /** A client has this long to send its (first) request's headers. */
  headersTimeoutMs: 10_000,
  /** ... and this long for the whole request. */
  requestTimeoutMs: 15_000,
  keepAliveTimeoutMs: 5_000,
  /** How often node:http checks the header and request timeouts. */
  checkIntervalMs: 1_000,
  /** Connections beyond this are closed at once, so the process keeps descriptors for its real work. */
  maxConnections: 4096,
};


/** Exact-path routes; GET routes answer HEAD too. Unknown paths get a JSON 404, thrown errors a JSON 500. */
export class HttpApp {
  private readonly routes: Route[] = [];
  private readonly guards: HttpGuard[] = [];

  on(methods: readonly string[], path: string, handler: HttpHandler): this {
    const set = new Set(methods.map((m) => m.toUpperCase()));
    if (set.has('GET')) set.add('HEAD');
    this.routes.push({ methods: set, path, handler });
    return this;
  }

  get(path: string, handler: HttpHandler): this {
    return this.on(['GET'], path, handler);
  }

  post(path: string, handler: HttpHandler): this {
    return this.on(['POST'], path, handler);
  }

  put(path: string, handler: HttpHandler): this {
    return this.on(['PUT'], path, handler);
  }

  patch(path: string, handler: HttpHandler): this {
    return this.on(['PATCH'], path, handler);
  }

  /** Adds a guard that sees every request before its route (authentication, allowlists). */
  guard(g: HttpGuard): this {
    this.guards.push(g);
    return this;
  }

  /** Answers one request. Never throws. */
  async handle(req: HttpRequest): Promise<HttpReply> {
    try {
      for (const g of this.guards) {
        const stop = await g(req);
        if (stop !== undefined) return stop;
      }
      const onPath = this.routes.filter((r) => r.path === req.path);
      const route = onPath.find((r) => r.methods.has(req.method));
      if (route === undefined) {
        if (onPath.length > 0) {
          const allowed = [...new Set(onPath.flatMap((r) => [...r.methods]))].sort().join(', ');
          return { ...jsonReply({ error: `method ${req.method} not allowed on ${req.path} (allowed: ${allowed})` }, 405), headers: { 'content-type': 'application/json', allow: allowed } };
        }
        return jsonReply({ error: `no such endpoint: ${req.method} ${req.path}` }, 404);
      }
      return await route.handler(req);
    } catch (e) {
      if (e instanceof PayloadTooLarge) return jsonReply({ error: e.message }, 413);
      return jsonReply({ error: e instanceof Error ? e.message : String(e) }, 500);
    }
  }

  /** Answers a request in-process, without a socket (tests). `path` may carry a query string. */
  async request(path: string, init: { method?: string; headers?: Readonly<Record<string, string>>; body?: string; remoteAddress?: string; clientCertVerified?: boolean } = {}): Promise<LocalResponse> {
    const target = parseRequestTarget(path);
    if (!target.ok) return toLocalResponse(jsonReply({ error: target.error }, 400));
    const headers = new Map(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const body = init.body ?? '';
    const reply = await this.handle({
      method: (init.method ?? 'GET').toUpperCase(),
      path: target.path,
      query: target.query,
      remoteAddress: init.remoteAddress,
      clientCertVerified: init.clientCertVerified ?? false,
      header: (name) => headers.get(name.toLowerCase()),
      text: () => (Buffer.byteLength(body) > MAX_BODY_BYTES ? Promise.reject(new PayloadTooLarge(`request body larger than ${MAX_BODY_BYTES} bytes`)) : Promise.resolve(body)),
    });
    return toLocalResponse(reply);
  }

  /** Serves the app on host:port (0: any free port), over TLS when `tls` is given. A port in use rejects with a clear message. */
  async listen(host: string, port: number, what = 'HTTP API', tls?: ServerTls, overrides: Partial<ServerLimits> = {}): Promise<Server> {
    const lim: ServerLimits = { ...SERVER_LIMITS, ...overrides };
    // node:http's own timeouts start with the first byte of a request (and `server.timeout` does not
    // fire on sockets its parser consumes): a client that connects and sends nothing would hold its
    // descriptor forever. Each connection gets headersTimeout to start its first request.
    const firstRequestTimers = new WeakMap<object, NodeJS.Timeout>();
    const armFirstRequestTimer = (socket: Socket): void => {
      const t = setTimeout(() => socket.destroy(), lim.headersTimeoutMs);
      t.unref();
      firstRequestTimers.set(socket, t);
      socket.once('close', () => clearTimeout(t));
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      const t = firstRequestTimers.get(req.socket);
      if (t !== undefined) {
        clearTimeout(t);
        firstRequestTimers.delete(req.socket);
      }
      this.serve(req, res).catch(() => {
        // serve() answers every request itself; this only keeps a broken socket from becoming an
        // unhandled rejection that would end the process.
        res.destroy();
      });
    };
    const limits = {
      headersTimeout: lim.headersTimeoutMs,
      requestTimeout: lim.requestTimeoutMs,
      keepAliveTimeout: lim.keepAliveTimeoutMs,
      connectionsCheckingInterval: lim.checkIntervalMs,
    };
    const server: Server =
      tls === undefined
        ? http.createServer(limits, handler)
        : https.createServer(
            { ...limits, cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca }), requestCert: tls.verifyClient !== 'none', rejectUnauthorized: tls.verifyClient === 'required', handshakeTimeout: lim.headersTimeoutMs },
            handler,
          );
    server.maxConnections = lim.maxConnections;
    if (tls === undefined) server.on('connection', armFirstRequestTimer);
    else server.on('secureConnection', armFirstRequestTimer);
    // A malformed request line or header never reaches serve(): node:http reports it here. Answer
    // 400 (or just close) and keep serving everyone else.
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (socket.writable && err.code !== 'ECONNRESET') {
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? Object.assign(new Error(`${what} port ${host}:${port} is already in use`), { code: e.code, address: host, port }) : e));
      server.listen(port, host, () => resolve());
    });
    // After listen, a failed accept (EMFILE under a flood of sockets) is emitted here; without a
    // listener it would end the process. The server keeps accepting once descriptors free up.
    server.on('error', () => undefined);
    return server;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let bodyPromise: Promise<string> | undefined;
    const target = parseRequestTarget(req.url);
    const reply = target.ok
      ? await this.handle({
          method: (req.method ?? 'GET').toUpperCase(),
          path: target.path,
          query: target.query,
          remoteAddress: req.socket.remoteAddress,
          clientCertVerified: (req.socket as Partial<TLSSocket>).authorized === true,
          header: (name) => {
            const v = req.headers[name.toLowerCase()];
            return Array.isArray(v) ? v.join(', ') : v;
          },
          text: () => (bodyPromise ??= readBody(req)),
        })
      : jsonReply({ error: `${target.error}: ${JSON.stringify((req.url ?? '').slice(0, 200))}` }, 400);
    if (bodyPromise === undefined) req.resume();
    const headers: Record<string, string | number> = { ...(reply.headers ?? {}) };
    const payload = reply.body === null ? undefined : Buffer.from(reply.body);
    headers['content-length'] = payload?.length ?? 0;
    res.on('error', () => undefined);
    res.writeHead(reply.status, headers);
    res.end(req.method === 'HEAD' ? undefined : payload);
  }
}

function toLocalResponse(reply: HttpReply): LocalResponse {
  const text = reply.body ?? '';
  const headers = new Map(Object.entries(reply.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return { status: reply.status, headers, text: () => Promise.resolve(text), json: () => Promise.resolve(JSON.parse(text) as unknown) };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      req.resume();
      reject(new PayloadTooLarge(`request body larger than ${MAX_BODY_BYTES} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        req.resume();
        reject(new PayloadTooLarge(`request body larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export interface HttpCallResult {
  readonly status: number;
  readonly body: string;
}

/**
 * One HTTP/1.1 call with node:http (no undici: see the top of this file), bounded by `timeoutMs`
 * for the whole exchange and by MAX_BODY_BYTES for the answer. Rejects on a network error, a timeout
 * or an oversized answer; any status code resolves.
 */
export function httpCall(url: string | URL, opts: { method?: string; headers?: Readonly<Record<string, string>>; body?: string; timeoutMs: number; tls?: ClientTls }): Promise<HttpCallResult> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : Buffer.from(opts.body);
    const target = typeof url === 'string' ? new URL(url) : url;
    const common = {
      method: opts.method ?? 'GET',
      headers: { ...(opts.headers ?? {}), ...(payload === undefined ? {} : { 'content-length': String(payload.length) }) },
      agent: false as const,
    };
    const t = opts.tls ?? {};
    const req =
      target.protocol === 'https:'
        ? https.request(target, { ...common, ...(t.ca === undefined ? {} : { ca: t.ca }), ...(t.cert === undefined ? {} : { cert: t.cert }), ...(t.key === undefined ? {} : { key: t.key }) })
        : http.request(target, common);
    const timer = setTimeout(() => req.destroy(new Error(`${opts.method ?? 'GET'} ${String(url)}: no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error(`${String(url)}: answer larger than ${MAX_BODY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    req.end(payload);
  });
}
