import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
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
    const url = new URL(path, 'http://in-process');
    const headers = new Map(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const body = init.body ?? '';
    const reply = await this.handle({
      method: (init.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      remoteAddress: init.remoteAddress,
      clientCertVerified: init.clientCertVerified ?? false,
      header: (name) => headers.get(name.toLowerCase()),
      text: () => (Buffer.byteLength(body) > MAX_BODY_BYTES ? Promise.reject(new PayloadTooLarge(`request body larger than ${MAX_BODY_BYTES} bytes`)) : Promise.resolve(body)),
    });
    const text = reply.body ?? '';
    const replyHeaders = new Map(Object.entries(reply.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    return { status: reply.status, headers: replyHeaders, text: () => Promise.resolve(text), json: () => Promise.resolve(JSON.parse(text) as unknown) };
  }

  /** Serves the app on host:port (0: any free port), over TLS when `tls` is given. A port in use rejects with a clear message. */
  async listen(host: string, port: number, what = 'HTTP API', tls?: ServerTls): Promise<Server> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.serve(req, res);
    const server: Server =
      tls === undefined
        ? http.createServer(handler)
        : https.createServer(
            { cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca }), requestCert: tls.verifyClient !== 'none', rejectUnauthorized: tls.verifyClient === 'required' },
            handler,
          );
    // Idle keep-alive connections must not hold up close() for long.
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? Object.assign(new Error(`${what} port ${host}:${port} is already in use`), { code: e.code, address: host, port }) : e));
      server.listen(port, host, () => resolve());
    });
    return server;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let bodyPromise: Promise<string> | undefined;
    const url = new URL(req.url ?? '/', 'http://local');
    const reply = await this.handle({
      method: (req.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      remoteAddress: req.socket.remoteAddress,
      clientCertVerified: (req.socket as Partial<TLSSocket>).authorized === true,
      header: (name) => {
        const v = req.headers[name.toLowerCase()];
        return Array.isArray(v) ? v.join(', ') : v;
      },
      text: () => (bodyPromise ??= readBody(req)),
    });
    if (bodyPromise === undefined) req.resume();
    const headers: Record<string, string | number> = { ...(reply.headers ?? {}) };
    const payload = reply.body === null ? undefined : Buffer.from(reply.body);
    headers['content-length'] = payload?.length ?? 0;
    res.on('error', () => undefined);
    res.writeHead(reply.status, headers);
    res.end(req.method === 'HEAD' ? undefined : payload);
  }
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
