import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLsn } from '../core/lsn.js';
import { DEFAULT_DYNAMIC_CONFIG, type ClusterView, type MemberRecord, type MemberTags } from '../ha/index.js';
import { computeRoutes, computeRouteTable, type RouteSettings } from './route-table.js';
import { parseSwitchoverPause, formatSwitchoverPause } from './switchover-pause.js';

const TAGS: MemberTags = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };
const SETTINGS: RouteSettings = { roMaxLagBytes: 1024 * 1024, roFallbackToLeader: false };
type Member = MemberRecord & { lease: string };

function member(name: string, over: Partial<Member> = {}): Member {
  const n = Number(name.slice(-1));
  return {
    name,
    apiUrl: `http://127.0.0.1:${8000 + n}`,
    host: '127.0.0.1',
    port: 5000 + n,
    role: 'replica',
    state: 'streaming',
    timeline: 1,
    walPosition: '0/3000000',
    tags: TAGS,
    version: 'test',
    lease: `lease-${name}`,
    ...over,
  };
}

const primary = (name: string, over: Partial<Member> = {}): Member => member(name, { role: 'primary', state: 'running', ...over });

function view(w: { leader?: string; leaderLease?: string; members: Member[]; statusLsn?: string; ttl?: number }): ClusterView {
  return {
    revision: 10,
    config: { ...DEFAULT_DYNAMIC_CONFIG, ...(w.ttl === undefined ? {} : { ttl: w.ttl }) },
    members: new Map(w.members.map((m) => [m.name, m])),
    invalid: new Map(),
    history: [],
    ...(w.leader === undefined ? {} : { leader: { name: w.leader, modRevision: 7, lease: w.leaderLease ?? `lease-${w.leader}` } }),
    ...(w.statusLsn === undefined ? {} : { status: { lsn: parseLsn(w.statusLsn), timeline: 1, leader: 'demo-1' } }),
  };
}

const names = (bs: readonly { name: string }[]): string[] => bs.map((b) => b.name);

describe('computeRouteTable', () => {
  const cases: {
    name: string;
    view: ClusterView;
    settings?: Partial<RouteSettings>;
    rw: string | undefined;
    rwMissing?: string;
    ro: string[];
  }[] = [
    {
      name: 'routes rw to the running primary that holds the leader key and ro to streaming replicas',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2'), member('demo-3')] }),
      rw: 'demo-1',
      ro: ['demo-2', 'demo-3'],
    },
    {
      name: 'gives no rw when no member holds the leader key, yet keeps serving reads',
      view: view({ members: [primary('demo-1'), member('demo-2')] }),
      rw: undefined,
      rwMissing: 'no-leader-key',
      ro: ['demo-2'],
    },
    {
      name: 'gives no rw while the new leader is still promoting (record says replica)',
      view: view({ leader: 'demo-2', members: [member('demo-2', { state: 'promoting' }), member('demo-3')] }),
      rw: undefined,
      rwMissing: 'leader-not-running-primary',
      ro: ['demo-3'],
    },
    {
      name: 'gives no rw to a primary whose record says it is not running',
      view: view({ leader: 'demo-1', members: [primary('demo-1', { state: 'starting' }), member('demo-2')] }),
      rw: undefined,
      rwMissing: 'leader-not-running-primary',
      ro: ['demo-2'],
    },
    {
      name: 'gives no rw when the leader has no member record',
      view: view({ leader: 'demo-9', members: [member('demo-2')] }),
      rw: undefined,
      rwMissing: 'leader-member-missing',
      ro: ['demo-2'],
    },
    {
      name: 'gives no rw when the member record is on another lease than the leader key',
      view: view({ leader: 'demo-1', leaderLease: 'other', members: [primary('demo-1'), member('demo-2')] }),
      rw: undefined,
      rwMissing: 'leader-lease-mismatch',
      ro: ['demo-2'],
    },
    {
      name: 'never routes rw to another member that also claims to be primary',
      view: view({ leader: 'demo-2', members: [primary('demo-1'), primary('demo-2'), member('demo-3')] }),
      rw: 'demo-2',
      ro: ['demo-3'],
    },
    {
      name: 'leaves out replicas tagged noloadbalance',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2', { tags: { ...TAGS, noloadbalance: true } }), member('demo-3')] }),
      rw: 'demo-1',
      ro: ['demo-3'],
    },
    {
      name: 'leaves out replicas that are not streaming',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2', { state: 'running' }), member('demo-3', { state: 'rewinding' })] }),
      rw: 'demo-1',
      ro: [],
    },
    {
      name: 'leaves out replicas lagging more than roMaxLagBytes behind the leader record',
      view: view({ leader: 'demo-1', members: [primary('demo-1', { walPosition: '0/5000000' }), member('demo-2', { walPosition: '0/4F00000' }), member('demo-3', { walPosition: '0/3000000' })] }),
      rw: 'demo-1',
      ro: ['demo-2'],
    },
    {
      name: 'measures lag against the published status when the leader record has no position',
      view: view({ statusLsn: '0/5000000', members: [member('demo-2', { walPosition: '0/5000000' }), member('demo-3', { walPosition: '0/1000000' })] }),
      rw: undefined,
      rwMissing: 'no-leader-key',
      ro: ['demo-2'],
    },
    {
      name: 'leaves out a replica whose position cannot be read when lag is measurable',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2', { walPosition: 'garbage' })] }),
      rw: 'demo-1',
      ro: [],
    },
    {
      name: 'keeps streaming replicas when no reference position is known',
      view: view({ members: [member('demo-2', { walPosition: '0/1' }), member('demo-3')] }),
      rw: undefined,
      rwMissing: 'no-leader-key',
      ro: ['demo-2', 'demo-3'],
    },
    {
      name: 'falls back to the leader for reads when asked and no replica is eligible',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2', { state: 'stopped' })] }),
      settings: { roFallbackToLeader: true },
      rw: 'demo-1',
      ro: ['demo-1'],
    },
    {
      name: 'does not fall back to the leader when a replica is eligible',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2')] }),
      settings: { roFallbackToLeader: true },
      rw: 'demo-1',
      ro: ['demo-2'],
    },
    {
      name: 'has nothing to fall back to without a running leader',
      view: view({ leader: 'demo-1', members: [member('demo-1', { state: 'promoting' })] }),
      settings: { roFallbackToLeader: true },
      rw: undefined,
      rwMissing: 'leader-not-running-primary',
      ro: [],
    },
    {
      name: 'orders replicas by name, numerically',
      view: view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-10'), member('demo-2')] }),
      rw: 'demo-1',
      ro: ['demo-2', 'demo-10'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const t = computeRouteTable(c.view, { ...SETTINGS, ...c.settings });
      assert.equal(t.rw?.name, c.rw);
      assert.equal(t.rwMissing?.code, c.rwMissing);
      assert.deepEqual(names(t.ro), c.ro);
    });
  }

  it('carries the host and port from the member record', () => {
    const t = computeRouteTable(view({ leader: 'demo-1', members: [primary('demo-1', { host: '10.0.0.1', port: 6543 })] }), SETTINGS);
    assert.deepEqual(t.rw, { name: 'demo-1', host: '10.0.0.1', port: 6543 });
  });
});

describe('computeRoutes (timing: fail-closed and switchover pause)', () => {
  const healthy = view({ leader: 'demo-1', members: [primary('demo-1'), member('demo-2')] });
  const NOW = 1_000_000;
  const base = { view: healthy, pause: undefined, confirmedAtMs: NOW - 100, nowMs: NOW, settings: SETTINGS };

  const cases: { name: string; input: Partial<Parameters<typeof computeRoutes>[0]>; rw: string | undefined; open: boolean; held?: string; recomputeAt?: number }[] = [
    { name: 'opens rw to the confirmed leader', input: {}, rw: 'demo-1', open: true, recomputeAt: NOW - 100 + 2000 },
    { name: 'holds everything before the first read', input: { view: undefined, confirmedAtMs: undefined }, rw: undefined, open: false, held: 'no-cluster-view' },
    { name: 'fails closed once the last confirmation is a ttl old', input: { confirmedAtMs: NOW - 2000 }, rw: undefined, open: false, held: 'leader-unconfirmed' },
    { name: 'still trusts a confirmation just under a ttl old', input: { confirmedAtMs: NOW - 1999 }, rw: 'demo-1', open: true, recomputeAt: NOW + 1 },
    { name: 'uses the ttl from the cluster config', input: { view: view({ leader: 'demo-1', members: [primary('demo-1')], ttl: 10 }), confirmedAtMs: NOW - 5000 }, rw: 'demo-1', open: true },
    {
      name: 'holds new rw connections during an announced switchover from the current leader, keeping its sessions',
      input: { pause: { from: 'demo-1', to: 'demo-2', untilMs: NOW + 500 } },
      rw: 'demo-1',
      open: false,
      held: 'switchover-pause',
      recomputeAt: NOW + 500,
    },
    { name: 'ignores an expired pause', input: { pause: { from: 'demo-1', to: null, untilMs: NOW } }, rw: 'demo-1', open: true },
    { name: 'ends the pause when the leader key names another running primary', input: { pause: { from: 'demo-9', to: 'demo-1', untilMs: NOW + 60_000 } }, rw: 'demo-1', open: true },
    {
      name: 'holds during a pause while no leader is known',
      input: { view: view({ members: [member('demo-2')] }), pause: { from: 'demo-1', to: null, untilMs: NOW + 60_000 } },
      rw: undefined,
      open: false,
      held: 'no-leader-key',
    },
    { name: 'fails closed even during a pause', input: { pause: { from: 'demo-1', to: null, untilMs: NOW + 60_000 }, confirmedAtMs: NOW - 3000 }, rw: undefined, open: false, held: 'leader-unconfirmed' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = computeRoutes({ ...base, ...c.input });
      assert.equal(r.rw?.name, c.rw);
      assert.equal(r.rwOpen, c.open);
      assert.equal(r.rwHeld?.code, c.held);
      if (c.recomputeAt !== undefined) assert.equal(r.recomputeAtMs, c.recomputeAt);
    });
  }

  it('keeps serving reads from the last view while failing closed', () => {
    const r = computeRoutes({ ...base, confirmedAtMs: NOW - 60_000 });
    assert.deepEqual(names(r.ro), ['demo-2']);
    assert.match(r.rwHeld?.message ?? '', /not confirmed the leader for 60\.0 s \(ttl 2 s\)/);
  });
});

describe('switchover pause announcements', () => {
  const cases: { text: string; ok: boolean }[] = [
    { text: '{"from":"demo-1","to":"demo-2","untilMs":5}', ok: true },
    { text: '{"from":"demo-1","to":null,"untilMs":5}', ok: true },
    { text: '{"from":"demo-1","untilMs":5}', ok: true },
    { text: '{"from":"","to":null,"untilMs":5}', ok: false },
    { text: '{"from":"demo-1","to":3,"untilMs":5}', ok: false },
    { text: '{"from":"demo-1","to":null,"untilMs":"5"}', ok: false },
    { text: 'null', ok: false },
    { text: 'not json', ok: false },
  ];
  for (const c of cases) {
    it(`${c.ok ? 'accepts' : 'ignores'} ${c.text}`, () => {
      assert.equal(parseSwitchoverPause(c.text) !== undefined, c.ok);
    });
  }

  it('reads back what it writes', () => {
    const p = { from: 'a', to: 'b', untilMs: 123 };
    assert.deepEqual(parseSwitchoverPause(formatSwitchoverPause(p)), p);
  });
});
