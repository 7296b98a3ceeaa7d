import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { healthOf, statusesFromBodies, type ChaosMember, type Healthy, type PatroniBody } from './cluster.js';
import { parseFaults } from './faults.js';
import { mulberry32 } from './random.js';
import { planFaults } from './run.js';
import { createTableStatement, insertStatement } from './writer.js';

/** The sentence of an unhealthy cluster ('healthy' otherwise). */
const why = (h: Healthy | string): string => (typeof h === 'string' ? h : 'healthy');
const member = (name: string): ChaosMember => ({ name, host: '127.0.0.1', port: 1, apiUrl: 'http://127.0.0.1:1', dataDir: '/d', agentPid: 1 });

describe('chaos parts', () => {
  it('replays the same random sequence for the same seed, and another for another seed', () => {
    const a = mulberry32(7);
    const b = mulberry32(7);
    const xs = Array.from({ length: 5 }, () => a.next());
    assert.deepEqual(Array.from({ length: 5 }, () => b.next()), xs);
    const c = mulberry32(8);
    assert.notDeepEqual(Array.from({ length: 5 }, () => c.next()), xs);
    assert.ok(xs.every((x) => x >= 0 && x < 1));
  });

  it('plans every fault once before picking at random, deterministically per seed', () => {
    const plan = planFaults(['kill', 'freeze', 'crash-postgres'], 7, mulberry32(1));
    assert.equal(plan.length, 7);
    assert.deepEqual(plan.slice(0, 3).sort(), ['crash-postgres', 'freeze', 'kill']);
    assert.deepEqual(planFaults(['kill', 'freeze', 'crash-postgres'], 7, mulberry32(1)), plan);
    assert.deepEqual(planFaults(['kill', 'freeze'], 1, mulberry32(1)).length, 1);
  });

  it('parses --faults, and refuses namespace faults and unknown names with a reason', () => {
    assert.deepEqual(parseFaults('kill, freeze'), { ok: true, faults: ['kill', 'freeze'] });
    const ns = parseFaults('kill,partition');
    assert.equal(ns.ok, false);
    assert.match(ns.ok ? '' : ns.message, /partition needs each node in its own network namespace/);
    const bad = parseFaults('kil');
    assert.match(bad.ok ? '' : bad.message, /unknown fault "kil"; known: kill, freeze/);
    assert.equal(parseFaults(' , ').ok, false);
  });

  it('reads member, timeline and LSN in the INSERT itself', () => {
    const sql = insertStatement('chaos_writes');
    assert.match(sql, /^INSERT INTO chaos_writes\(v, member, tl\) VALUES \(\$1, /);
    assert.match(sql, /pg_walfile_name\(pg_current_wal_lsn\(\)\), 1, 8/);
    assert.match(sql, /RETURNING .*inet_server_port\(\).*pg_current_wal_lsn\(\)::text AS lsn$/);
    assert.match(createTableStatement('t'), /v bigint PRIMARY KEY, member text NOT NULL, tl int NOT NULL, at timestamptz NOT NULL DEFAULT now\(\)/);
  });

  it('reads health from Warden bodies: one running leader, streaming replicas on its timeline', () => {
    const w = (isLeader: boolean, role: string, state: string, timeline = 2): PatroniBody => ({ role, state: 'running', timeline, warden: { isLeader, state } });
    const ok = healthOf(statusesFromBodies([{ member: member('a'), body: w(true, 'primary', 'running') }, { member: member('b'), body: w(false, 'replica', 'streaming') }]));
    assert.ok(typeof ok !== 'string');
    assert.equal(ok.leader.name, 'a');
    const behind = healthOf(statusesFromBodies([{ member: member('a'), body: w(true, 'primary', 'running') }, { member: member('b'), body: w(false, 'replica', 'streaming', 1) }]));
    assert.match(why(behind), /b: replica\/streaming tl 1/);
    const silent = healthOf(statusesFromBodies([{ member: member('a'), body: w(true, 'primary', 'running') }, { member: member('b'), body: undefined }]));
    assert.match(why(silent), /b: no answer/);
  });

  it('reads health from Patroni 3.0.2 bodies: master means primary, a replica streams when the primary lists it', () => {
    const primary: PatroniBody = { role: 'master', state: 'running', timeline: 1, replication: [{ application_name: 'p2', state: 'streaming' }] };
    const replica: PatroniBody = { role: 'replica', state: 'running', timeline: 1 };
    const h = healthOf(statusesFromBodies([{ member: member('p1'), body: primary }, { member: member('p2'), body: replica }]));
    assert.ok(typeof h !== 'string', why(h));
    const notYet = healthOf(statusesFromBodies([{ member: member('p1'), body: primary }, { member: member('p2'), body: replica }, { member: member('p3'), body: replica }]));
    assert.match(why(notYet), /p3: replica\/running/);
  });
});
