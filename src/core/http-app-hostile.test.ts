import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { HttpApp, jsonReply, parseRequestTarget, textReply } from './http-app.js';

/** Sends raw bytes, resolves with what came back before the server closed or `waitMs` passed. */
function rawExchange(port: number, bytes: string | Buffer, waitMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    }, waitMs);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      // One answer is all these tests need.
      if (/\r\n\r\n/.test(Buffer.concat(chunks).toString('latin1'))) {
        clearTimeout(timer);
        s.destroy();
        resolve(Buffer.concat(chunks).toString('latin1'));
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') resolve(Buffer.concat(chunks).toString('latin1'));
      else reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    s.end(bytes);
  });
}

function statusOf(answer: string): number | undefined {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(answer);
  return m === null ? undefined : Number(m[1]);
}

function appWithConfig(): HttpApp {
  const app = new HttpApp();
  app.get('/config', () => jsonReply({ secret: 'config' }));
  app.get('/health', () => jsonReply({ ok: true }));
  app.post('/echo', async (req) => textReply(await req.text()));
  return app;
}

describe('request targets are split without URL resolution', () => {
  const table: ReadonlyArray<[string, { path: string; query?: string } | 'refused']> = [
    ['/config', { path: '/config' }],
    ['/config?x=1&y', { path: '/config', query: 'x=1&y=' }],
    ['//evil/config', { path: '//evil/config' }],
    ['//a:99999/x', { path: '//a:99999/x' }],
    ['/a/../config', { path: '/a/../config' }],
    ['http://host:8008/config?a=b', { path: '/config', query: 'a=b' }],
    ['http://host', { path: '/' }],
    ['*', 'refused'],
    ['host:8008', 'refused'],
    ['', 'refused'],
    ['/with space', 'refused'],
    ['/ctl\u0001', 'refused'],
  ];
  for (const [raw, want] of table) {
    it(`${JSON.stringify(raw)} → ${want === 'refused' ? 'refused' : want.path}`, () => {
      const t = parseRequestTarget(raw);
      if (want === 'refused') {
        assert.equal(t.ok, false);
        return;
      }
      assert.ok(t.ok);
      assert.equal(t.path, want.path);
      assert.equal(t.query.toString(), want.query ?? '');
    });
  }

  it('never throws, whatever the target', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (raw) => {
        parseRequestTarget(raw);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('a hostile client over a real socket', () => {
  const app = appWithConfig();
  let server: Awaited<ReturnType<HttpApp['listen']>>;
  let port = 0;

  before(async () => {
    server = await app.listen('127.0.0.1', 0, 'test API', undefined, { headersTimeoutMs: 800, requestTimeoutMs: 1200, checkIntervalMs: 200 });
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('answers 400 to a target WHATWG URL rejects and keeps serving', async () => {
    const answer = await rawExchange(port, 'GET //a:99999/x HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(answer), 404);
    const star = await rawExchange(port, 'GET * HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(star), 400);
    const health = await rawExchange(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(health), 200);
  });

  it('does not serve //evil/config as /config', async () => {
    const answer = await rawExchange(port, 'GET //evil/config HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(answer), 404);
    assert.doesNotMatch(answer, /secret/);
  });

  it('answers 400 to a malformed request line or header instead of dropping silently', async () => {
    assert.equal(statusOf(await rawExchange(port, 'GARBAGE\r\n\r\n')), 400);
    assert.equal(statusOf(await rawExchange(port, 'GET /health HTTP/1.1\r\nBad Header\r\n\r\n')), 400);
  });

  it('closes a connection that never sends a request, within its timeouts', async () => {
    const s = net.connect(port, '127.0.0.1');
    const closedAfterMs = await new Promise<number>((resolve, reject) => {
      const t0 = Date.now();
      const guard = setTimeout(() => reject(new Error('idle socket still open after 10 s')), 10_000);
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(guard);
        resolve(Date.now() - t0);
      });
    });
    assert.ok(closedAfterMs < 10_000);
  });

  it('answers every fuzzed request with a proper status code and stays up (fast-check)', async () => {
    const methods = fc.constantFrom('GET', 'POST', 'HEAD', 'OPTIONS', 'PATCH', 'DELETE', 'PUT', 'CONNECT', 'TRACE', 'G\u00e9T', 'get');
    const target = fc.oneof(
      fc.string({ maxLength: 60 }).map((s) => `/${s}`),
      fc.string({ maxLength: 60 }).map((s) => `//${s}`),
      fc.webUrl(),
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.constantFrom('//a:99999/x', '*', '/%', '/%zz', '/?%', 'http://[::1', '/config#frag'),
    );
    const header = fc.tuple(fc.string({ unit: 'binary', minLength: 0, maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 40 }));
    const request = fc.record({ method: methods, target, headers: fc.array(header, { maxLength: 4 }), body: fc.string({ unit: 'binary', maxLength: 200 }), declareLength: fc.boolean() });
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headerLines = r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
        const length = r.declareLength ? `content-length: ${Buffer.byteLength(r.body, 'latin1')}\r\n` : '';
        const bytes = Buffer.from(`${r.method} ${r.target} HTTP/1.1\r\nhost: x\r\n${headerLines}${length}\r\n${r.body}`, 'latin1');
        const answer = await rawExchange(port, bytes, 1500);
        const status = statusOf(answer);
        // Either a proper HTTP answer, or the connection closed without one (never a hang or crash).
        if (status !== undefined) {
          answered++;
          assert.ok(status >= 200 && status < 600, `status ${status} for ${JSON.stringify(r)}`);
          assert.ok(status !== 500, `a server error for ${JSON.stringify(r)}: ${answer}`);
        }
      }),
      { numRuns: 1500 },
    );
    assert.ok(answered > 500, `only ${answered} of 1500 requests got an answer`);
    assert.equal(statusOf(await rawExchange(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')), 200);
  });
});
