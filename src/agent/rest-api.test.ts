import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { LocalResponse } from '../core/http-app.js';
import { parseLsn } from '../core/lsn.js';
import { DEFAULT_DYNAMIC_CONFIG, type ClusterView, type ScheduledRestart } from '../ha/index.js';
import type { AgentSnapshot } from './agent.js';
import { createAgentMetrics } from './metrics.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { createRestApi, parseLagParam } from './rest-api.js';
import { addressMatches, type OperationsDeps } from './rest-operations.js';

const TAGS = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };
const view: ClusterView = {
  revision: 5,
  config: DEFAULT_DYNAMIC_CONFIG,
  members: new Map(),
  invalid: new Map(),
  history: [{ timeline: 2, lsn: '0/3000000', reason: 'demo-1 lost', timeMs: 0, leader: 'demo-2' }],
  initialize: { value: '7300', modRevision: 1 },
  leader: { name: 'demo-2', modRevision: 3, lease: '9' },
  status: { lsn: parseLsn('0/5000000'), timeline: 2, leader: 'demo-2' },
};

function snap(role: 'primary' | 'replica', over: Partial<AgentSnapshot> = {}): AgentSnapshot {
  const inRecovery = role === 'replica';
  return {
    identity: { name: 'demo-1', cluster: 'demo', apiUrl: 'http://x', pgHost: '127.0.0.1', pgPort: 1, tags: TAGS, bootstrapConfig: DEFAULT_DYNAMIC_CONFIG },
    view,
    dcsError: undefined,
    pg: { dataDir: { kind: 'initialized' }, process: 'running' },
    status: { inRecovery, timeline: 2, walPosition: parseLsn(inRecovery ? '0/4F00000' : '0/5000000'), systemIdentifier: '7300', pendingRestart: false, streaming: inRecovery },
    isLeader: !inRecovery,
    reason: { code: inRecovery ? 'replica-streaming' : 'leader-healthy', message: 'm' },
    state: inRecovery ? 'streaming' : 'running',
    role,
    lastLoopAtMs: Date.now(),
    lastOkLoopAtMs: Date.now(),
    loopDurationMs: 3,
    leaseDeadlineMs: Date.now() + 1500,
    startedAtMs: 0,
    decisions: new Map([['leader-healthy', 3]]),
    ...over,
  };
}

const call = async (s: AgentSnapshot, path: string, method = 'GET'): Promise<LocalResponse> =>
  createRestApi(() => s, new Registry()).request(path, { method });

describe('REST API (Patroni-compatible status codes)', () => {
  const table: [string, 'primary' | 'replica', string, string, number][] = [
    ['/primary on the leader', 'primary', 'GET', '/primary', 200],
    ['/primary on a replica', 'replica', 'GET', '/primary', 503],
    ['/ on the leader', 'primary', 'GET', '/', 200],
    ['/replica on a replica', 'replica', 'GET', '/replica', 200],
    ['/replica on the leader', 'primary', 'GET', '/replica', 503],
    ['/replica within ?lag=2MB', 'replica', 'GET', '/replica?lag=2MB', 200],
    ['/replica beyond ?lag=16kB', 'replica', 'GET', '/replica?lag=16kB', 503],
    ['/read-only on a replica', 'replica', 'GET', '/read-only', 200],
    ['HEAD /health', 'replica', 'HEAD', '/health', 200],
    ['OPTIONS /leader', 'primary', 'OPTIONS', '/leader', 200],
    ['/readiness on a replica', 'replica', 'GET', '/readiness', 200],
  ];
  for (const [name, role, method, path, status] of table) {
    it(`answers ${status} for ${name}`, async () => {
      assert.equal((await call(snap(role), path, method)).status, status);
    });
  }

  it('answers 503 on /health and /readiness when PostgreSQL is not running', async () => {
    const s = snap('replica', { pg: { dataDir: { kind: 'initialized' }, process: 'crashed' }, status: undefined });
    assert.equal((await call(s, '/health')).status, 503);
    assert.equal((await call(s, '/readiness')).status, 503);
  });

  it('answers 503 on /liveness when no loop completed for long, and when every loop in that time failed', async () => {
    assert.equal((await call(snap('replica', { lastLoopAtMs: Date.now() - 60_000, lastOkLoopAtMs: Date.now() - 60_000 }), '/liveness')).status, 503);
    // Loops come round (lastLoopAtMs is fresh) but each one throws: not alive.
    assert.equal((await call(snap('replica', { lastLoopAtMs: Date.now(), lastOkLoopAtMs: Date.now() - 60_000 }), '/liveness')).status, 503);
  });

  it('answers 200 on /liveness during a 10-minute clone: the loop goes on cycling beside the operation', async () => {
    const operation = { kind: 'clone' as const, plan: ['clone' as const, 'configure' as const, 'start' as const], startedBy: 'creating-replica' as const, startedAtMs: Date.now() - 600_000, elapsedMs: 600_000 };
    const s = snap('replica', { lastLoopAtMs: Date.now() - 300, lastOkLoopAtMs: Date.now() - 300, operation });
    assert.equal((await call(s, '/liveness')).status, 200);
  });

  it('keeps a noloadbalance replica out of /replica', async () => {
    const s = snap('replica');
    const tagged = { ...s, identity: { ...s.identity, tags: { ...TAGS, noloadbalance: true } } };
    assert.equal((await call(tagged, '/replica')).status, 503);
  });

  it('shows the decision reason and the WAL position in /patroni', async () => {
    const body = (await (await call(snap('replica'), '/patroni')).json()) as { role: string; xlog: { received_location: number }; warden: { reason: { code: string }; walPosition: string } };
    assert.equal(body.role, 'replica');
    assert.equal(body.warden.reason.code, 'replica-streaming');
    assert.equal(body.warden.walPosition, '0/4F00000');
    assert.equal(body.xlog.received_location, 0x4f00000);
  });

  it('lists the history in Patroni\'s shape and 404s unknown paths', async () => {
    const h = (await (await call(snap('primary'), '/history')).json()) as unknown[][];
    assert.deepEqual(h[0]?.slice(0, 3), [1, 0x3000000, 'demo-1 lost']);
    const nf = await call(snap('primary'), '/nope');
    assert.equal(nf.status, 404);
    assert.match(await nf.text(), /no such endpoint: GET \/nope/);
  });

  it('exports metrics read from the snapshot at scrape time', async () => {
    const s = snap('primary');
    const registry = createAgentMetrics(() => s);
    const text = await (await createRestApi(() => s, registry).request('/metrics')).text();
    assert.match(text, /warden_is_leader\{cluster="demo",member="demo-1"\} 1/);
    assert.match(text, /warden_decisions_total\{cluster="demo",member="demo-1",code="leader-healthy"\} 3/);
  });

  it('parses Patroni lag values with units', () => {
    assert.equal(parseLagParam('1MB'), 1024 * 1024);
    assert.equal(parseLagParam('100'), 100);
    assert.equal(parseLagParam('lots'), undefined);
  });
});

describe('REST API: operation endpoints guard', () => {
  const dcs = new MemoryDcs();
  const ops = (over: Partial<OperationsDeps> = {}): OperationsDeps => ({
    snapshot: () => snap('primary'),
    requestOperation: async () => ({ ok: true, reason: { code: 'reloading', message: 'r' } }),
    poke: () => undefined,
    dcs,
    cluster: 'demo',
    ...over,
  });
  const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  it('answers 401 without the configured credentials and runs the operation with them', async () => {
    const app = createRestApi(() => snap('primary'), new Registry(), ops({ auth: { username: 'warden', password: 's3cret' } }));
    const no = await app.request('/reload', { method: 'POST' });
    assert.equal(no.status, 401);
    assert.equal(no.headers.get('www-authenticate'), 'Basic realm="warden"');
    assert.equal((await app.request('/reload', { method: 'POST', headers: { authorization: basic('warden', 'wrong') } })).status, 401);
    assert.equal((await app.request('/reload', { method: 'POST', headers: { authorization: basic('warden', 's3cret') } })).status, 202);
    assert.equal((await app.request('/primary')).status, 200, 'health checks stay open');
  });

  it('answers 403 to a caller outside restapi.allowlist', async () => {
    const app = createRestApi(() => snap('primary'), new Registry(), ops({ allowlist: ['10.0.0.0/8'] }));
    assert.equal((await app.request('/reload', { method: 'POST', remoteAddress: '192.168.1.5' })).status, 403);
    const inside = createRestApi(() => snap('primary'), new Registry(), ops({ allowlist: ['10.0.0.0/8'] }));
    assert.equal((await inside.request('/reload', { method: 'POST', remoteAddress: '::ffff:10.1.2.3' })).status, 202);
  });

  it('answers 400 to a malformed body and to a schedule without a time zone', async () => {
    const app = createRestApi(() => snap('primary'), new Registry(), ops());
    assert.equal((await app.request('/switchover', { method: 'POST', body: '[1,2' })).status, 400);
    assert.equal((await app.request('/switchover', { method: 'POST', body: JSON.stringify({ leader: 'demo-1', scheduled_at: '2031-01-01T10:00' }) })).status, 400);
    assert.equal((await app.request('/failover', { method: 'POST', body: '{}' })).status, 400);
  });

  it('refuses a config edit that breaks the timing rule, naming the field', async () => {
    const app = createRestApi(() => snap('primary'), new Registry(), ops());
    const r = await app.request('/config', { method: 'PATCH', body: JSON.stringify({ loop_wait: 9 }) });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /ttl: loop_wait \+ 2 × retry_timeout must be ≤ ttl/);
  });

  it('schedules one restart (202), refuses a second (409), a past time (422) or a bad role (400), and cancels it (200, then 404)', async () => {
    let scheduled: ScheduledRestart | undefined;
    let ran = 0;
    const app = createRestApi(
      () => ({ ...snap('primary'), ...(scheduled === undefined ? {} : { scheduledRestart: scheduled }) }),
      new Registry(),
      ops({
        requestOperation: async () => {
          ran++;
          return { ok: true, reason: { code: 'restarting', message: 'r' } };
        },
        scheduleRestart: (x) => (scheduled === undefined ? ((scheduled = x), { ok: true }) : { ok: false, conflict: 'a restart is already scheduled' }),
        cancelScheduledRestart: () => {
          const was = scheduled;
          scheduled = undefined;
          return was;
        },
      }),
    );
    const at = new Date(Date.now() + 3_600_000).toISOString();
    const first = await app.request('/restart', { method: 'POST', body: JSON.stringify({ schedule: at, role: 'master', restart_pending: true }) });
    assert.equal(first.status, 202, await first.text());
    assert.deepEqual(scheduled && { role: scheduled.role, restartPending: scheduled.restartPending, atMs: scheduled.atMs }, { role: 'primary', restartPending: true, atMs: Date.parse(at) });
    assert.equal(ran, 0, 'nothing restarts before the time');
    assert.deepEqual(((await (await app.request('/patroni')).json()) as { scheduled_restart?: unknown }).scheduled_restart, { schedule: at, role: 'primary', restart_pending: true });
    assert.equal((await app.request('/restart', { method: 'POST', body: JSON.stringify({ schedule: at }) })).status, 409);
    assert.equal((await app.request('/restart', { method: 'POST', body: JSON.stringify({ schedule: '2020-01-01T00:00:00Z' }) })).status, 422);
    const noZone = await app.request('/restart', { method: 'POST', body: JSON.stringify({ schedule: '2031-01-01T10:00' }) });
    assert.equal(noZone.status, 400);
    assert.match(await noZone.text(), /schedule "2031-01-01T10:00" has no time zone/);
    assert.equal((await app.request('/restart', { method: 'POST', body: JSON.stringify({ role: 'leader' }) })).status, 400);
    const cancel = await app.request('/restart', { method: 'DELETE' });
    assert.equal(cancel.status, 200);
    assert.match(await cancel.text(), new RegExp(`scheduled restart at ${at.replace(/\./g, '\\.')} cancelled`));
    assert.equal((await app.request('/restart', { method: 'DELETE' })).status, 404);
    assert.equal(ran, 0);
  });

  it('refuses an immediate restart whose conditions do not hold (412) and runs one whose do', async () => {
    const app = createRestApi(() => snap('primary'), new Registry(), ops());
    const wrongRole = await app.request('/restart', { method: 'POST', body: JSON.stringify({ role: 'replica' }) });
    assert.equal(wrongRole.status, 412);
    assert.match(await wrongRole.text(), /this member is primary, not replica/);
    assert.equal((await app.request('/restart', { method: 'POST', body: JSON.stringify({ restart_pending: true }) })).status, 412);
    assert.equal((await app.request('/restart', { method: 'POST', body: JSON.stringify({ role: 'primary' }) })).status, 200);
  });

  it('matches addresses against IPs and CIDR blocks', () => {
    assert.equal(addressMatches('10.1.2.3', '10.0.0.0/8'), true);
    assert.equal(addressMatches('11.1.2.3', '10.0.0.0/8'), false);
    assert.equal(addressMatches('127.0.0.1', '127.0.0.1'), true);
    assert.equal(addressMatches('::ffff:127.0.0.1', '127.0.0.0/8'), true);
  });
});
