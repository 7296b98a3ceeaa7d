import { emptyReply, HttpApp, jsonReply, textReply, type HttpReply, type HttpRequest } from '../core/http-app.js';
import type { Registry } from 'prom-client';
import type { RouterStatus } from './router-status.js';

/**
 * The router's admin HTTP API: GET /status (JSON: leader, routes, held queue, sessions per backend),
 * GET /metrics (Prometheus) and GET/HEAD/OPTIONS /health — 200 while etcd confirmed the cluster within
 * one lease ttl, 503 while the router fails closed — for whatever balances between routers.
 */
export function createAdminApi(src: { status: () => RouterStatus; healthy: () => boolean; metrics: Registry }): HttpApp {
  const app = new HttpApp();
  app.get('/status', () => jsonReply(src.status()));
  app.get('/metrics', async () => textReply(await src.metrics.metrics(), 200, { 'content-type': src.metrics.contentType }));
  const health = (req: HttpRequest): HttpReply => {
    const ok = src.healthy();
    if (req.method !== 'GET') return emptyReply(ok ? 200 : 503);
    const s = src.status();
    return jsonReply({ healthy: ok, leader: s.leader, rwOpen: s.rw.open, held: s.rw.held, confirmedAgoMs: s.etcd.confirmedAgoMs }, ok ? 200 : 503);
  };
  app.on(['GET', 'HEAD', 'OPTIONS'], '/health', health);
  return app;
}
