import { Hono, type Context } from 'hono';
import type { Registry } from 'prom-client';
import type { RouterStatus } from './router-status.js';

/**
 * The router's admin HTTP API: GET /status (JSON: leader, routes, held queue, sessions per backend),
 * GET /metrics (Prometheus) and GET/HEAD/OPTIONS /health — 200 while etcd confirmed the cluster within
 * one lease ttl, 503 while the router fails closed — for whatever balances between routers.
 */
export function createAdminApi(src: { status: () => RouterStatus; healthy: () => boolean; metrics: Registry }): Hono {
  const app = new Hono();
  app.get('/status', (c) => c.json(src.status()));
  app.get('/metrics', async (c) => c.text(await src.metrics.metrics(), 200, { 'content-type': src.metrics.contentType }));
  const health = (c: Context): Response => {
    const ok = src.healthy();
    if (c.req.method !== 'GET') return c.body(null, ok ? 200 : 503);
    const s = src.status();
    return c.json({ healthy: ok, leader: s.leader, rwOpen: s.rw.open, held: s.rw.held, confirmedAgoMs: s.etcd.confirmedAgoMs }, ok ? 200 : 503);
  };
  app.on(['GET', 'HEAD', 'OPTIONS'], '/health', health);
  app.notFound((c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}
