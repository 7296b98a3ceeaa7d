import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { signalPid } from '../../src/core/process-info.js';
import type { ListOutput } from '../../src/cli/list.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { readState, sql } from '../support/cluster.js';

// Operations against one real cluster: switchover, REST status codes, config edits, pause, reinit, sync mode.
describe('operations (switchover, config, pause, reinit, synchronous mode)', { timeout: 900_000 }, () => {
  let dir = '';
  let auth = '';

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    return leaders.length === 1 && streaming.length === l.members.length - 1 && new Set(l.members.map((m) => m.timeline)).size === 1 ? l : undefined;
  };
  const leaderOf = (l: ListOutput) => l.members.find((m) => m.role === 'leader')!;
  const post = async (apiUrl: string, path: string, body: unknown, withAuth = true) =>
    fetch(new URL(path, apiUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(withAuth ? { authorization: `Basic ${Buffer.from(`warden:${auth}`).toString('base64')}` } : {}) },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });

  before(async () => {
    dir = await traversableTempDir('warden-ops-');
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    auth = (await readFile(join(dir, 'secrets', 'restapi.password'), 'utf8')).trim();
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const lead = leaderOf(l);
    await sql(dir, lead.host, lead.port, 'CREATE TABLE ops_writes (id bigserial PRIMARY KEY, note text)');
  });

  after(async () => {
    if (dir !== '') {
      await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('switches over to a named candidate without losing a committed row', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const old = leaderOf(l);
    const cand = l.members.find((m) => m.role !== 'leader')!;
    for (let i = 0; i < 20; i++) await sql(dir, old.host, old.port, 'INSERT INTO ops_writes(note) VALUES ($1)', [`before-${i}`]);
    const r = await runWarden(['switchover', '--dir', dir, '--candidate', cand.name, '--force'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`Successfully switched over to "${cand.name}"`));
    const after = await eventually(healthy, { timeoutMs: 90_000, what: 'the old leader streaming again' });
    assert.equal(leaderOf(after).name, cand.name);
    const n = await sql(dir, cand.host, cand.port, "SELECT count(*)::int AS n FROM ops_writes WHERE note LIKE 'before-%'");
    assert.equal(n.rows[0]?.n, 20);
    const h = await runWarden(['history', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    assert.match(h.stdout, new RegExp(`switchover to ${cand.name}`));
  });

  it('refuses switchover requests with the status codes Patroni uses, changing nothing', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const lead = leaderOf(l);
    const other = l.members.find((m) => m.role !== 'leader')!;
    assert.equal((await post(lead.apiUrl, '/switchover', { leader: lead.name }, false)).status, 401);
    assert.equal((await post(lead.apiUrl, '/switchover', '{not json')).status, 400);
    assert.equal((await post(lead.apiUrl, '/switchover', { leader: other.name, candidate: lead.name })).status, 412);
    assert.equal((await post(lead.apiUrl, '/switchover', { leader: lead.name, candidate: lead.name })).status, 412);
    assert.equal((await post(lead.apiUrl, '/switchover', { leader: lead.name, candidate: 'nobody' })).status, 412);
    assert.equal((await post(lead.apiUrl, '/switchover', { leader: lead.name, scheduled_at: '2030-01-01T00:00:00' })).status, 400);
    assert.equal((await post(lead.apiUrl, '/switchover', { leader: lead.name, scheduled_at: '2001-01-01T00:00:00Z' })).status, 422);
    const cli = await runWarden(['switchover', '--dir', dir, '--candidate', 'demo-9', '--force'], { timeoutMs: 30_000 });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /demo-9: no such member/);
    assert.equal(leaderOf(await list()).name, lead.name);
  });

  it('rejects an invalid config edit with the field, and applies a valid one', async () => {
    const bad = await runWarden(['edit-config', '--dir', dir, '--set', 'loop_wait=5', '--force'], { timeoutMs: 15_000 });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /loop_wait \+ 2 × retry_timeout must be ≤ ttl/);
    const typo = await runWarden(['edit-config', '--dir', dir, '--set', 'tll=5', '--force'], { timeoutMs: 15_000 });
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /did you mean "ttl"/);
    const ok = await runWarden(['edit-config', '--dir', dir, '--pg', 'work_mem=8MB', '--force'], { timeoutMs: 15_000 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /\+ postgresql\.parameters\.work_mem: "8MB"/);
    const lead = leaderOf(await list());
    await eventually(async () => {
      const r = await sql(dir, lead.host, lead.port, 'SHOW work_mem');
      return r.rows[0]?.work_mem === '8MB' ? true : undefined;
    }, { timeoutMs: 30_000, what: 'work_mem reloaded' });
    const shown = await runWarden(['show-config', '--dir', dir, '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal((JSON.parse(shown.stdout) as { postgresql: { parameters: Record<string, unknown> } }).postgresql.parameters.work_mem, '8MB');
  });

  it('pauses and resumes: every agent reports maintenance mode', async () => {
    const p = await runWarden(['pause', '--dir', dir, '--wait'], { timeoutMs: 90_000 });
    assert.equal(p.code, 0, p.stderr);
    const l = await list();
    assert.ok(l.members.every((m) => m.reason?.code === 'paused'));
    const r = await runWarden(['resume', '--dir', dir, '--wait'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr);
  });

  it('restarts a replica at the scheduled time, shows the schedule until then, and cancels one', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const replica = l.members.find((m) => m.role !== 'leader')!;
    const startTime = async (): Promise<string> => String((await sql(dir, replica.host, replica.port, 'SELECT pg_postmaster_start_time()::text AS t')).rows[0]?.t);
    const before = await startTime();
    const at = new Date(Date.now() + 4000).toISOString();
    const r = await runWarden(['restart', replica.name, '--dir', dir, '--scheduled', at], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`restart scheduled at ${at.replace(/\./g, '\\.')}`));
    await eventually(async () => ((await list()).members.find((m) => m.name === replica.name)?.scheduledRestart === at ? true : undefined), { timeoutMs: 10_000, what: 'the schedule in warden list' });
    assert.equal(await startTime(), before, 'not restarted before its time');
    await eventually(async () => (Date.now() > Date.parse(at) && (await startTime().catch(() => before)) !== before ? true : undefined), { timeoutMs: 60_000, what: 'the scheduled restart' });
    await eventually(async () => ((await list()).members.find((m) => m.name === replica.name)?.scheduledRestart === null ? true : undefined), { timeoutMs: 10_000, what: 'the schedule gone from warden list' });

    const later = new Date(Date.now() + 3_600_000).toISOString();
    assert.equal((await runWarden(['restart', replica.name, '--dir', dir, '--scheduled', later], { timeoutMs: 30_000 })).code, 0);
    const twice = await runWarden(['restart', replica.name, '--dir', dir, '--scheduled', later], { timeoutMs: 30_000 });
    assert.notEqual(twice.code, 0);
    assert.match(`${twice.stdout}${twice.stderr}`, /already scheduled/);
    const past = await runWarden(['restart', replica.name, '--dir', dir, '--scheduled', '2020-01-01T00:00:00Z'], { timeoutMs: 30_000 });
    assert.notEqual(past.code, 0);
    assert.match(past.stderr, /--scheduled: 2020-01-01T00:00:00\.000Z is in the past/);
    const cancel = await runWarden(['restart', replica.name, '--dir', dir, '--cancel'], { timeoutMs: 30_000 });
    assert.equal(cancel.code, 0, `${cancel.stdout}\n${cancel.stderr}`);
    assert.match(cancel.stdout, /cancelled/);
    await eventually(async () => ((await list()).members.find((m) => m.name === replica.name)?.scheduledRestart === null ? true : undefined), { timeoutMs: 10_000, what: 'the cancelled schedule gone' });
  });

  it('reinitializes a replica from the leader, keeping the old data aside', async () => {
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster' });
    const replica = l.members.find((m) => m.role !== 'leader')!;
    const r = await runWarden(['reinit', replica.name, '--dir', dir, '--wait'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const memberDir = join(dir, 'members', replica.name);
    assert.ok((await readdir(memberDir)).some((f) => f.startsWith('data.moved-')), 'the old data dir was moved aside');
    assert.equal(leaderOf(await list()).role, 'leader');
    const cli = await runWarden(['reinit', leaderOf(await list()).name, '--dir', dir], { timeoutMs: 30_000 });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /is the leader/);
  });

  it('in strict synchronous mode only the sync standby is promoted when the leader is lost', async () => {
    const e = await runWarden(['edit-config', '--dir', dir, '--set', 'synchronous_mode=on', '--set', 'synchronous_mode_strict=true', '--force'], { timeoutMs: 15_000 });
    assert.equal(e.code, 0, e.stderr);
    const l = await eventually(async () => {
      const x = await healthy();
      return x?.members.some((m) => m.role === 'sync_standby') ? x : undefined;
    }, { timeoutMs: 60_000, what: 'a sync standby' });
    const sync = l.members.find((m) => m.role === 'sync_standby')!;
    const lead = leaderOf(l);
    await sql(dir, lead.host, lead.port, "INSERT INTO ops_writes(note) VALUES ('sync-acked')");
    const state = await readState(dir);
    signalPid(state.members.find((m) => m.name === lead.name)!.agentPid!, 'SIGKILL');
    const next = await eventually(async () => {
      const x = await list();
      const nl = x.members.find((m) => m.role === 'leader' && m.state === 'running');
      return nl !== undefined && nl.name !== lead.name ? nl : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200, what: 'a new leader' });
    assert.equal(next.name, sync.name);
    const n = await sql(dir, next.host, next.port, "SELECT count(*)::int AS n FROM ops_writes WHERE note = 'sync-acked'");
    assert.equal(n.rows[0]?.n, 1);
    await eventually(healthy, { timeoutMs: 120_000, what: 'the cluster healed' });
  });

  it('prints a DSN and the topology, and refuses to remove a cluster under another name', async () => {
    const d = await runWarden(['dsn', '--dir', dir], { timeoutMs: 15_000 });
    assert.match(d.stdout, /^host=127\.0\.0\.1 port=\d+ user=postgres dbname=postgres passfile=/);
    const t = await runWarden(['topology', '--dir', dir], { timeoutMs: 15_000 });
    assert.match(t.stdout, /leader/);
    const rm1 = await runWarden(['remove', 'demo', '--dir', dir, '--confirm', 'other'], { timeoutMs: 15_000 });
    assert.equal(rm1.code, 1);
    assert.match(rm1.stderr, /nothing removed/);
  });
});
