import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { emptyReply, HttpApp, httpCall, jsonReply, MAX_BODY_BYTES, textReply } from './http-app.js';

function testApp(): HttpApp {
  const app = new HttpApp();
  app.guard((req) => (req.header('x-deny') === 'yes' ? textReply('denied', 403) : undefined));
  app.get('/hello', (req) => jsonReply({ hello: req.query.get('name') ?? 'world', from: req.remoteAddress ?? null }));
  app.on(['GET', 'OPTIONS'], '/health', (req) => (req.method === 'GET' ? jsonReply({ ok: true }, 503) : emptyReply(503)));
  app.post('/echo', async (req) => textReply(await req.text(), 201, { 'x-len': String((await req.text()).length) }));
  app.get('/boom', () => {
    throw new Error('kaboom');
  });
  return app;
}

describe('HttpApp in-process', () => {
  const app = testApp();

  it('routes by exact path and method, with the query string and headers', async () => {
    const r = await app.request('/hello?name=warden', { remoteAddress: '10.0.0.1' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.deepEqual(await r.json(), { hello: 'warden', from: '10.0.0.1' });
  });

  it('answers 404 for an unknown path and 405 with Allow for a known path and another method', async () => {
    const missing = await app.request('/nope');
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { error: 'no such endpoint: GET /nope' });
    const wrong = await app.request('/hello', { method: 'DELETE' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'GET, HEAD');
  });

  it('lets a guard answer first, turns a thrown error into a JSON 500 and an oversized body into 413', async () => {
    assert.equal((await app.request('/hello', { headers: { 'X-Deny': 'yes' } })).status, 403);
    const boom = await app.request('/boom');
    assert.equal(boom.status, 500);
    assert.deepEqual(await boom.json(), { error: 'kaboom' });
    assert.equal((await app.request('/echo', { method: 'POST', body: 'x'.repeat(MAX_BODY_BYTES + 1) })).status, 413);
  });
});

describe('HttpApp over a real socket, with httpCall', () => {
  const app = testApp();
  let base = '';
  let server: Awaited<ReturnType<HttpApp['listen']>>;

  before(async () => {
    server = await app.listen('127.0.0.1', 0);
    const a = server.address() as net.AddressInfo;
    base = `http://127.0.0.1:${a.port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('serves GET, HEAD (no body) and a POST body, and reports the caller address', async () => {
    const get = await httpCall(`${base}/hello`, { timeoutMs: 2000 });
    assert.equal(get.status, 200);
    assert.deepEqual(JSON.parse(get.body), { hello: 'world', from: '127.0.0.1' });
    const head = await httpCall(`${base}/hello`, { method: 'HEAD', timeoutMs: 2000 });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    const options = await httpCall(`${base}/health`, { method: 'OPTIONS', timeoutMs: 2000 });
    assert.equal(options.status, 503);
    assert.equal(options.body, '');
    const post = await httpCall(`${base}/echo`, { method: 'POST', body: '{"a":"é"}', headers: { 'content-type': 'application/json' }, timeoutMs: 2000 });
    assert.equal(post.status, 201);
    assert.equal(post.body, '{"a":"é"}');
  });

  it('answers 413 to a body larger than the limit and keeps serving', async () => {
    const big = await httpCall(`${base}/echo`, { method: 'POST', body: 'x'.repeat(MAX_BODY_BYTES + 10), timeoutMs: 5000 }).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    // Either the 413 arrives, or the server's answer cut the upload short; both leave the server up.
    if (!(big instanceof Error)) assert.equal(big.status, 413);
    assert.equal((await httpCall(`${base}/hello`, { timeoutMs: 2000 })).status, 200);
  });

  it('refuses a second listener on the same port with a message that names it', async () => {
    const port = (server.address() as net.AddressInfo).port;
    await assert.rejects(app.listen('127.0.0.1', port, 'REST API'), new RegExp(`REST API port 127\\.0\\.0\\.1:${port} is already in use`));
  });

  it('httpCall rejects within its timeout when the server accepts but never answers, and on a refused connection', async () => {
    const accepted: net.Socket[] = [];
    const silent = net.createServer((s) => accepted.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    const port = (silent.address() as net.AddressInfo).port;
    const t0 = Date.now();
    await assert.rejects(httpCall(`http://127.0.0.1:${port}/x`, { timeoutMs: 300 }), /no answer within 300 ms/);
    assert.ok(Date.now() - t0 < 2000);
    for (const s of accepted) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    await assert.rejects(httpCall(`http://127.0.0.1:${port}/x`, { timeoutMs: 1000 }), /ECONNREFUSED/);
  });
});
