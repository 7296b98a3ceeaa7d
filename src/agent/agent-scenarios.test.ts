import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { WardenError } from '../core/errors.js';
import type { CallOptions, Dcs, KeyValue, LeaseGrant, Snapshot, WatchEvent, WriteOptions } from '../dcs/dcs.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { clusterPrefix, DEFAULT_DYNAMIC_CONFIG, KEYS, type DynamicConfig, type MemberTags } from '../ha/index.js';
import { FakePgNetwork, FakePostgres, type FakePostgresFacts } from '../postgres/fake-postgres.js';
import type { PeerFacts } from '../ha/index.js';
import { Agent, type AgentSnapshot } from './agent.js';
import type { Logger } from './logger.js';
import { peerFactsFromPatroni } from './peers.js';
import { patroniStatus } from './rest-api.js';

// Whole agent loops in-process (docs/architecture.md, 'How one HA loop runs'): N Agents and one
// MemoryDcs on one FakeClock, each agent with a FakePostgres on one FakePgNetwork, peers read from
// each other's snapshots. The clock moves in small steps with the promise queue flushed between
// them; after every step the harness checks invariant 1 (a writable primary is always the member
// the leader key names). Tests assert outcomes — who leads, roles, timelines, what runs — never calls.

const CLUSTER = 'scn';
const PREFIX = clusterPrefix(CLUSTER);
const STEP_MS = 10;
/** No scenario may take longer than this in real time, whatever its fake-time budget. */
const REAL_LIMIT_MS = 30_000;
const TAGS: MemberTags = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };

/** A Dcs in front of the shared store that one member can be cut off from (its calls and watches fail). */
class SeverableDcs implements Dcs {
  private severed = false;
  private readonly watchFailers = new Set<(e: Error) => void>();

  constructor(private readonly inner: MemoryDcs) {}

  /** From now on every call fails with 'dcs-unavailable', as for an agent that lost its etcd. */
  sever(): void {
    this.severed = true;
    for (const fail of [...this.watchFailers]) fail(this.unreachable());
  }

  heal(): void {
    this.severed = false;
  }

  private unreachable(): WardenError {
    return new WardenError('dcs-unavailable', 'scenario: this member is cut off from the DCS', { retryable: true });
  }

  private async gate(): Promise<void> {
    if (this.severed) throw this.unreachable();
  }

  async range(prefix: string, opts?: CallOptions): Promise<Snapshot> {
    await this.gate();
    return this.inner.range(prefix, opts);
  }
  async get(key: string, opts?: CallOptions): Promise<KeyValue | undefined> {
    await this.gate();
    return this.inner.get(key, opts);
  }
  async put(key: string, value: string, opts?: WriteOptions): Promise<number> {
    await this.gate();
    return this.inner.put(key, value, opts);
  }
  async create(key: string, value: string, opts?: WriteOptions): Promise<boolean> {
    await this.gate();
    return this.inner.create(key, value, opts);
  }
  async compareAndSwap(key: string, value: string, expectModRevision: number, opts?: WriteOptions): Promise<boolean> {
    await this.gate();
    return this.inner.compareAndSwap(key, value, expectModRevision, opts);
  }
  async delete(key: string, opts?: CallOptions & { expectModRevision?: number }): Promise<boolean> {
    await this.gate();
    return this.inner.delete(key, opts);
  }
  async grantLease(ttlMs: number, opts?: CallOptions): Promise<LeaseGrant> {
    await this.gate();
    return this.inner.grantLease(ttlMs, opts);
  }
  async keepAlive(leaseId: string, opts?: CallOptions): Promise<{ ttlMs: number }> {
    await this.gate();
    return this.inner.keepAlive(leaseId, opts);
  }
  async revokeLease(leaseId: string, opts?: CallOptions): Promise<void> {
    await this.gate();
    return this.inner.revokeLease(leaseId, opts);
  }
  async watch(prefix: string, fromRevision: number, onEvents: (events: readonly WatchEvent[], revision: number) => void, signal: AbortSignal): Promise<void> {
    await this.gate();
    let failWatch: ((e: Error) => void) | undefined;
    const cut = new Promise<never>((_, reject) => {
      failWatch = reject;
    });
    const fail = (e: Error): void => failWatch?.(e);
    this.watchFailers.add(fail);
    try {
      await Promise.race([this.inner.watch(prefix, fromRevision, onEvents, signal), cut]);
    } finally {
      this.watchFailers.delete(fail);
    }
  }
  close(): void {}
}

/** Keeps the last log lines of one member, stamped with fake time, for a failure message. */
class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  loopFailures = 0;

  constructor(
    private readonly name: string,
    private readonly clock: FakeClock,
  ) {}

  private add(level: string, obj: object, msg: string): void {
    if (msg === 'HA loop failed') this.loopFailures++;
    this.lines.push(`${this.clock.monotonicMs()} ${this.name} ${level} ${msg} ${JSON.stringify(obj)}`);
    if (this.lines.length > 60) this.lines.shift();
  }
  info(obj: object, msg: string): void {
    this.add('info', obj, msg);
  }
  warn(obj: object, msg: string): void {
    this.add('warn', obj, msg);
  }
  error(obj: object, msg: string): void {
    this.add('error', obj, msg);
  }
  debug(): void {}
}

interface Member {
  readonly name: string;
  readonly agent: Agent;
  readonly pg: FakePostgres;
  readonly dcs: SeverableDcs;
  readonly log: RecordingLogger;
  readonly apiUrl: string;
  stopped: boolean;
}

/** One cluster of in-process agents and the driver that moves its clock. */
class Scenario {
  readonly clock = new FakeClock();
  readonly store = new MemoryDcs({ clock: this.clock });
  readonly network = new FakePgNetwork();
  readonly members: Member[] = [];
  readonly config: DynamicConfig;
  /** Every leader key value seen, in order, one entry per change ('' when there was none). */
  readonly leaderChanges: string[] = [];
  private readonly startedAtReal = Date.now();
  /** When false, a switchover's check of the candidate's received WAL fails (it never catches up). */
  candidatesAnswer = true;

  constructor(names: readonly string[], config: Partial<DynamicConfig> = {}) {
    this.config = { ...DEFAULT_DYNAMIC_CONFIG, ...config };
    names.forEach((name, i) => {
      const dcs = new SeverableDcs(this.store);
      const log = new RecordingLogger(name, this.clock);
      const listen = { host: '10.0.0.' + String(i + 1), port: 5432 };
      const pg = new FakePostgres(
        {
          name,
          dataDir: `/var/lib/warden/${name}/data`,
          binDir: '/usr/lib/postgresql/15/bin',
          listen,
          socketDir: `/run/warden/${name}`,
          superuser: { username: 'postgres', password: 'su' },
          replication: { username: 'replicator', password: 're' },
          parameters: {},
        },
        { network: this.network, clock: this.clock },
      );
      const apiUrl = `http://${listen.host}:8008`;
      const agent = new Agent(
        { name, cluster: CLUSTER, apiUrl, pgHost: listen.host, pgPort: listen.port, tags: TAGS, bootstrapConfig: this.config },
        {
          dcs,
          pg,
          clock: this.clock,
          log,
          fetchPeer: (peer, url) => this.readPeer(peer, url),
          // A switchover's candidate is asked through the fake network, as the real one asks its PostgreSQL.
          candidateReceiveLsn: async (c, timeoutMs) => {
            if (!this.candidatesAnswer) throw new Error('the candidate does not answer');
            const target = this.network.at(c);
            if (target === undefined) throw new Error(`nothing listens on ${c.host}:${c.port}`);
            const rows = await target.query('SELECT pg_last_wal_receive_lsn()::text AS lsn', [], timeoutMs);
            const lsn = rows[0]?.['lsn'];
            return typeof lsn === 'string' ? lsn : null;
          },
        },
      );
      this.members.push({ name, agent, pg, dcs, log, apiUrl, stopped: false });
    });
  }

  /** Writes a switchover request from `from` to `to`, as `warden switchover` does. */
  async requestSwitchover(from: Member, to: Member): Promise<void> {
    await this.store.put(PREFIX + KEYS.failover, JSON.stringify({ kind: 'switchover', leader: from.name, candidate: to.name, requestedAtMs: this.clock.nowMs() }));
  }

  member(name: string): Member {
    const m = this.members.find((x) => x.name === name);
    assert.ok(m !== undefined, `no member ${name}`);
    return m;
  }

  /** GET /patroni of a peer, in-process: its snapshot through the same shape and decoder as over HTTP. */
  private async readPeer(name: string, apiUrl: string): Promise<PeerFacts> {
    const m = this.members.find((x) => x.apiUrl === apiUrl);
    if (m === undefined || m.stopped) return { name, reachable: false };
    return peerFactsFromPatroni(name, JSON.parse(JSON.stringify(patroniStatus(m.agent.snapshot()))));
  }

  /** Starts the agents of `names` (default: every member); the others stay unstarted and unreachable. */
  async start(names: readonly string[] = this.members.map((m) => m.name)): Promise<void> {
    const chosen = this.members.filter((m) => names.includes(m.name));
    for (const m of this.members) if (!names.includes(m.name) && !this.started.has(m.name)) m.stopped = true;
    for (const m of chosen) {
      m.stopped = false;
      this.started.add(m.name);
    }
    await this.settle(Promise.all(chosen.map((m) => m.agent.start())), 5_000, 'agents starting');
  }

  private readonly started = new Set<string>();

  async stopAll(): Promise<void> {
    for (const m of this.members) m.dcs.heal();
    for (const m of this.members) m.pg.unfreezeStarts();
    await this.settle(
      Promise.all(
        this.members.map(async (m) => {
          if (m.stopped || !this.started.has(m.name)) return;
          m.stopped = true;
          await m.agent.stop();
        }),
      ),
      180_000,
      'agents stopping',
    );
  }

  /** The leader key's value now ('' when there is none). */
  async leaderKey(): Promise<string> {
    return (await this.store.get(PREFIX + KEYS.leader))?.value ?? '';
  }

  /** One step: move the clock, let every promise that can run run, check invariant 1, track the leader. */
  async step(ms = STEP_MS): Promise<void> {
    if (Date.now() - this.startedAtReal > REAL_LIMIT_MS) assert.fail(`over ${REAL_LIMIT_MS} ms of real time\n${this.describe()}`);
    this.clock.advance(ms);
    await flush();
    const leader = await this.leaderKey();
    if (this.leaderChanges.at(-1) !== leader) this.leaderChanges.push(leader);
    // Invariant 1 (docs/architecture.md): only the member the leader key names takes writes.
    const writable = this.members.filter((m) => m.pg.facts().writable).map((m) => m.name);
    assert.ok(writable.length <= 1, `two writable primaries at ${this.clock.monotonicMs()} ms: ${writable.join(', ')}\n${this.describe()}`);
    if (writable.length === 1) assert.equal(writable[0], leader, `${writable[0] ?? '?'} takes writes at ${this.clock.monotonicMs()} ms but the leader key names ${leader || 'nobody'}\n${this.describe()}`);
  }

  /**
   * Steps until `check` returns a value; fails after `fakeMs` of fake time or REAL_LIMIT_MS of real
   * time since the scenario began, with every member's state and last log lines.
   */
  async until<T>(what: string, fakeMs: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
    const until = this.clock.monotonicMs() + fakeMs;
    for (;;) {
      const v = await check();
      if (v !== undefined) return v;
      if (this.clock.monotonicMs() >= until) assert.fail(`not within ${fakeMs} ms of fake time: ${what}\n${this.describe()}`);
      if (Date.now() - this.startedAtReal > REAL_LIMIT_MS) assert.fail(`not within ${REAL_LIMIT_MS} ms of real time: ${what}\n${this.describe()}`);
      await this.step();
    }
  }

  /** Steps for `fakeMs`, checking `check` (which throws when it fails) after every step. */
  async holds(fakeMs: number, check: () => Promise<void> | void): Promise<void> {
    const until = this.clock.monotonicMs() + fakeMs;
    while (this.clock.monotonicMs() < until) {
      await this.step();
      await check();
    }
  }

  /** Moves the clock until `p` settles (bounded by fake and real time), in larger steps. */
  async settle<T>(p: Promise<T>, fakeMs: number, what: string): Promise<T> {
    let done = false;
    const tracked = p.finally(() => {
      done = true;
    });
    tracked.catch(() => undefined);
    await flush();
    const until = this.clock.monotonicMs() + fakeMs;
    while (!done) {
      if (this.clock.monotonicMs() >= until || Date.now() - this.startedAtReal > REAL_LIMIT_MS * 2) assert.fail(`${what}: not settled\n${this.describe()}`);
      this.clock.advance(50);
      await flush();
    }
    return tracked;
  }

  /** Waits for a healthy cluster: one leader taking writes, every other member streaming from it. */
  async healthy(fakeMs = 30_000): Promise<Member> {
    return this.until('one writable leader and every other member streaming from it', fakeMs, async () => {
      const leader = await this.leaderKey();
      const l = this.members.find((m) => m.name === leader);
      if (l === undefined || !l.pg.facts().writable) return undefined;
      const others = this.members.filter((m) => m !== l && !m.stopped && this.started.has(m.name));
      return others.every((m) => m.pg.facts().streamingFrom === l.name && m.agent.snapshot().state === 'streaming') ? l : undefined;
    });
  }

  describe(): string {
    const rows = this.members.map((m) => {
      const f: FakePostgresFacts = m.pg.facts();
      const s: AgentSnapshot = m.agent.snapshot();
      return `  ${m.name}: pg ${f.process}${f.writable ? ' writable' : ''}${f.streamingFrom === undefined ? '' : ` streaming from ${f.streamingFrom}`} tl ${f.timeline ?? '-'} (${f.clusterState ?? f.dataDir}); agent ${s.state} / ${s.reason.code}: ${s.reason.message}`;
    });
    const logs = this.members.flatMap((m) => m.log.lines.slice(-12)).sort((a, b) => Number(a.split(' ')[0]) - Number(b.split(' ')[0]));
    return [`fake time ${this.clock.monotonicMs()} ms; leader changes: ${this.leaderChanges.map((l) => l || '(none)').join(' → ')}`, ...rows, '  last log lines:', ...logs.map((l) => `    ${l}`)].join('\n');
  }
}

async function flush(): Promise<void> {
  // Two turns: a continuation queued by a setImmediate-free promise chain runs in the first.
  await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => setImmediate(r));
}

const NAMES = ['m1', 'm2', 'm3'];

describe('agent scenarios (in-process, fake clock, fake PostgreSQL)', { timeout: 300_000 }, () => {
  let scenario: Scenario | undefined;
  /** Three healthy members, the leader and a candidate for a switchover. */
  const switchoverScenario = async (): Promise<{ s: Scenario; old: Member; candidate: Member }> => {
    const s = (scenario = new Scenario(NAMES));
    await s.start();
    const old = await s.healthy();
    const candidate = s.members.find((m) => m !== old);
    assert.ok(candidate !== undefined);
    return { s, old, candidate };
  };
  /** A leader with 12 GB (about 48 s of fake time to copy at the fake's 256 MB/s) and m2 cloning it. */
  const longCloneInFlight = async (): Promise<{ s: Scenario; m2: Member }> => {
    const s = (scenario = new Scenario(['m1', 'm2']));
    await s.start(['m1']);
    const leader = await s.healthy();
    leader.pg.growDatabase(12 * 1024 * 1024 * 1024);
    await s.start(['m2']);
    const m2 = s.member('m2');
    await s.until('m2 is cloning', 5_000, () => (m2.pg.operationsInFlight() > 0 && m2.pg.facts().dataDir === 'invalid' ? true : undefined));
    return { s, m2 };
  };
  afterEach(async () => {
    await scenario?.stopAll();
    scenario = undefined;
  });

  it('bootstraps three members into one leader and two replicas streaming from it', async () => {
    const s = (scenario = new Scenario(NAMES));
    await s.start();
    const leader = await s.healthy(20_000);
    // The loop that started a replica reports what it did ('creating-replica'); the next one, the steady state.
    await s.until('every member reports its steady reason', 2_000, () =>
      s.members.every((m) => m.agent.snapshot().reason.code === (m === leader ? 'leader-healthy' : 'replica-streaming')) ? true : undefined,
    );
    const sysid = (await s.store.get(PREFIX + KEYS.initialize))?.value;
    assert.ok(sysid !== undefined && sysid !== '');
    for (const m of s.members) {
      const snap = m.agent.snapshot();
      assert.equal(m.pg.facts().systemIdentifier, sysid, `${m.name} belongs to the cluster`);
      assert.equal(m.pg.facts().timeline, 1);
      assert.equal(snap.isLeader, m === leader);
      assert.equal(snap.role, m === leader ? 'primary' : 'replica');
      assert.equal(snap.reason.code, m === leader ? 'leader-healthy' : 'replica-streaming');
    }
    assert.deepEqual(s.leaderChanges.filter((l) => l !== ''), [leader.name], 'one leader, never a second');
    const st = await leader.pg.status(1_000);
    assert.deepEqual(st.replicas?.map((r) => r.applicationName).sort(), NAMES.filter((n) => n !== leader.name));
  });

  it('fails over when the leader PostgreSQL crashes for good: a replica leads on timeline 2 and the other follows it', async (t) => {
    const s = (scenario = new Scenario(NAMES, { primary_start_timeout: 5 }));
    await s.start();
    const old = await s.healthy();
    old.pg.failNextStart('FATAL: could not open file "global/pg_control": Input/output error', Number.POSITIVE_INFINITY);
    old.pg.crash();
    const crashedAt = s.clock.monotonicMs();
    const next = await s.until('another member leads and takes writes', 5_000 + 2_000 + 5_000, async () => {
      const l = s.members.find((m) => m !== old && m.name === s.leaderChanges.at(-1));
      return l !== undefined && l.pg.facts().writable ? l : undefined;
    });
    const tookMs = s.clock.monotonicMs() - crashedAt;
    t.diagnostic(`crash for good: ${next.name} writable ${tookMs} ms (fake) after the crash; primary_start_timeout 5 s`);
    assert.ok(tookMs >= 5_000, `the leader kept its key while primary_start_timeout ran (${tookMs} ms)`);
    assert.equal(next.pg.facts().timeline, 2);
    const third = s.members.find((m) => m !== old && m !== next);
    assert.ok(third !== undefined);
    await s.until('the third member streams from the new leader on timeline 2', 20_000, () =>
      third.pg.facts().streamingFrom === next.name && third.pg.facts().timeline === 2 ? true : undefined,
    );
    // Its agent keeps trying to rejoin (rewind, start, which fails), but it never serves again.
    await s.holds(3_000, () => assert.equal(old.pg.facts().accepting, false, 'the broken old primary never accepts connections again'));
    assert.equal(old.agent.snapshot().isLeader, false);
    assert.equal(await s.leaderKey(), next.name);
    const history = JSON.parse((await s.store.get(PREFIX + KEYS.history))?.value ?? '[]') as { timeline: number; leader: string }[];
    assert.deepEqual(history.map((h) => [h.timeline, h.leader]), [[2, next.name]]);
  });

  it('fences a leader cut off from the DCS before its lease can expire there, fails over, and lets it rejoin as a replica', async (t) => {
    const s = (scenario = new Scenario(NAMES));
    await s.start();
    const old = await s.healthy();
    old.dcs.sever();
    const cutAt = s.clock.monotonicMs();
    // The step checks (invariant 1) already fail if old still takes writes once its key is gone.
    let fencedAt: number | undefined;
    let keyGoneAt: number | undefined;
    const next = await s.until('another member leads and takes writes', 2_000 + 5_000, async () => {
      if (fencedAt === undefined && old.pg.facts().process !== 'running') fencedAt = s.clock.monotonicMs();
      if (keyGoneAt === undefined && (await s.leaderKey()) !== old.name) keyGoneAt = s.clock.monotonicMs();
      const leader = s.leaderChanges.at(-1);
      const l = s.members.find((m) => m !== old && m.name === leader);
      return l !== undefined && l.pg.facts().writable ? l : undefined;
    });
    assert.ok(fencedAt !== undefined, 'the old primary was stopped');
    assert.ok(keyGoneAt !== undefined, 'the old leader key went away');
    t.diagnostic(`cut off: fenced ${fencedAt - cutAt} ms, key gone ${keyGoneAt - cutAt} ms, ${next.name} writable ${s.clock.monotonicMs() - cutAt} ms after the cut (fake; ttl ${s.config.ttl} s)`);
    assert.ok(fencedAt < keyGoneAt, `fenced at ${fencedAt - cutAt} ms after the cut, before its key expired at ${keyGoneAt - cutAt} ms`);
    assert.equal(next.pg.facts().timeline, 2);
    old.dcs.heal();
    await s.until('the old leader rejoins, streaming from the new one on timeline 2', 30_000, () =>
      old.pg.facts().streamingFrom === next.name && old.pg.facts().timeline === 2 ? true : undefined,
    );
    assert.equal(await s.leaderKey(), next.name);
  });

  it('restarts a crashed leader PostgreSQL in place: no failover, same timeline, replicas stream again', async () => {
    const s = (scenario = new Scenario(NAMES));
    await s.start();
    const leader = await s.healthy();
    const changesBefore = s.leaderChanges.length;
    leader.pg.crash();
    await s.until('the leader takes writes again', 5_000, () => (leader.pg.facts().writable ? true : undefined));
    await s.healthy(10_000);
    assert.equal(s.leaderChanges.length, changesBefore, `the leader key never changed hands: ${s.leaderChanges.join(' → ')}`);
    assert.equal(await s.leaderKey(), leader.name);
    for (const m of s.members) assert.equal(m.pg.facts().timeline, 1, `${m.name} still on timeline 1`);
  });

  it('releases the key when every start of the leader PostgreSQL hangs: a replica leads within primary_start_timeout + ttl + a few loops', async (t) => {
    const s = (scenario = new Scenario(NAMES, { primary_start_timeout: 5 }));
    await s.start();
    const old = await s.healthy();
    old.pg.freezeStarts();
    old.pg.crash();
    const crashedAt = s.clock.monotonicMs();
    const budgetMs = s.config.primary_start_timeout * 1000 + s.config.ttl * 1000 + 4 * s.config.loop_wait * 1000;
    const next = await s.until(`a replica leads within ${budgetMs} ms`, budgetMs, () => {
      const l = s.members.find((m) => m !== old && m.name === s.leaderChanges.at(-1));
      return l !== undefined && l.pg.facts().writable ? l : undefined;
    });
    t.diagnostic(`hanging starts: ${next.name} writable ${s.clock.monotonicMs() - crashedAt} ms (fake) after the crash; budget ${budgetMs} ms`);
    assert.ok(s.clock.monotonicMs() - crashedAt >= s.config.primary_start_timeout * 1000, 'not before primary_start_timeout');
    assert.equal(next.pg.facts().timeline, 2);
    // Its frozen start was stopped when it gave up the key; whatever it starts next (a standby to
    // follow or race, which hangs as well on this "disk") never takes writes.
    await s.holds(10_000, () => assert.equal(old.pg.facts().writable, false, 'the old leader never takes writes again'));
  });

  it('releases the key when the leader PostgreSQL runs but stops answering, and a replica takes over', async () => {
    const s = (scenario = new Scenario(NAMES, { primary_start_timeout: 5 }));
    await s.start();
    const old = await s.healthy();
    old.pg.hangStatus();
    const hungAt = s.clock.monotonicMs();
    const next = await s.until('a replica leads and takes writes', 5_000 + 2_000 + 3_000, () => {
      const l = s.members.find((m) => m !== old && m.name === s.leaderChanges.at(-1));
      return l !== undefined && l.pg.facts().writable ? l : undefined;
    });
    assert.ok(s.clock.monotonicMs() - hungAt >= 5_000, 'the leader waited primary_start_timeout for its server to answer');
    assert.equal(next.pg.facts().timeline, 2);
    assert.equal(old.pg.facts().writable, false, 'the hung primary was stopped');
  });

  it('switches over on request: the leader stops fast, the named candidate has every WAL byte and leads, the old leader streams from it', async (t) => {
    const { s, old, candidate } = await switchoverScenario();
    const requestedAt = s.clock.monotonicMs();
    await s.requestSwitchover(old, candidate);
    const next = await s.until('the candidate leads and takes writes', 20_000, () => (s.leaderChanges.at(-1) === candidate.name && candidate.pg.facts().writable ? candidate : undefined));
    t.diagnostic(`switchover: ${next.name} writable ${s.clock.monotonicMs() - requestedAt} ms (fake) after the request`);
    assert.equal(await s.store.get(PREFIX + KEYS.failover), undefined, 'the request is done and deleted');
    const again = await s.healthy(60_000);
    assert.equal(again.name, candidate.name);
    assert.equal(old.pg.facts().writable, false);
    assert.equal(candidate.pg.facts().timeline, 2, 'one promotion, one new timeline');
  });

  it('a switchover whose candidate never confirms the last WAL fails once: the request is dropped and the leader serves again, without stopping for it twice', async () => {
    const { s, old, candidate } = await switchoverScenario();
    s.candidatesAnswer = false;
    await s.requestSwitchover(old, candidate);
    await s.until('the request is dropped', 30_000, async () => ((await s.store.get(PREFIX + KEYS.failover)) === undefined ? true : undefined));
    await s.until('the old leader takes writes again', 10_000, () => (old.pg.facts().writable ? true : undefined));
    await s.holds(10_000, () => {
      assert.equal(s.leaderChanges.at(-1), old.name);
      assert.ok(old.pg.facts().writable, 'no second stop for a dropped request');
    });
    assert.equal(old.agent.snapshot().reason.code, 'leader-healthy');
  });

  it('hands over at once when the leader agent stops gracefully: its lease is revoked, a replica leads well within the ttl', async (t) => {
    const s = (scenario = new Scenario(NAMES));
    await s.start();
    const old = await s.healthy();
    old.stopped = true;
    const stoppedAt = s.clock.monotonicMs();
    const stopping = old.agent.stop();
    const next = await s.until('a replica leads and takes writes', s.config.ttl * 1000, () => {
      const l = s.members.find((m) => m !== old && m.name === s.leaderChanges.at(-1));
      return l !== undefined && l.pg.facts().writable ? l : undefined;
    });
    const tookMs = s.clock.monotonicMs() - stoppedAt;
    t.diagnostic(`graceful stop: ${next.name} writable ${tookMs} ms (fake) after the leader agent was told to stop`);
    await s.settle(stopping, 10_000, 'the old leader agent stopping');
    assert.ok(tookMs < s.config.ttl * 1000, `a successor need not wait for the ttl (${tookMs} ms)`);
    assert.equal(old.pg.facts().process, 'stopped');
    assert.equal(old.pg.facts().clusterState, 'shut down', 'stopped fast: a clean shutdown checkpoint');
    assert.equal(await s.store.get(PREFIX + KEYS.membersDir + old.name), undefined, 'its member key went with its lease');
  });

  it('clones again from the new leader when the leader it was cloning from fails mid-copy', async () => {
    const s = (scenario = new Scenario(NAMES, { primary_start_timeout: 5 }));
    await s.start(['m1', 'm2']);
    const old = await s.healthy();
    // 4 GB at the fake's 256 MB/s: a clone of about 16 s of fake time.
    old.pg.growDatabase(4 * 1024 * 1024 * 1024);
    await s.start(['m3']);
    const m3 = s.member('m3');
    await s.until('m3 is cloning', 5_000, () => (m3.pg.operationsInFlight() > 0 ? true : undefined));
    old.pg.failNextStart('FATAL: could not open file "global/pg_control": Input/output error', Number.POSITIVE_INFINITY);
    old.pg.crash();
    const next = await s.until('the other replica leads', 12_000, () => {
      const l = s.members.find((m) => m !== old && m !== m3 && m.name === s.leaderChanges.at(-1));
      return l !== undefined && l.pg.facts().writable ? l : undefined;
    });
    await s.until('m3 streams from the new leader on timeline 2', 60_000, () =>
      m3.pg.facts().streamingFrom === next.name && m3.pg.facts().timeline === 2 ? true : undefined,
    );
    assert.equal(m3.pg.facts().systemIdentifier, next.pg.facts().systemIdentifier);
    assert.deepEqual(await m3.pg.listMovedAside(), [], 'the failed copy was removed, not moved aside: it held no cluster');
  });

  it('keeps leading past bad records (a member without tags, a config with ttl "abc") and reports them', async () => {
    const s = (scenario = new Scenario(NAMES));
    await s.start();
    const leader = await s.healthy();
    const ghost = { name: 'ghost', apiUrl: 'http://10.0.0.9:8008', host: '10.0.0.9', port: 5432, role: 'replica', state: 'streaming', version: '0.1.0' };
    await s.store.put(PREFIX + KEYS.membersDir + 'ghost', JSON.stringify(ghost));
    await s.store.put(PREFIX + KEYS.config, JSON.stringify({ ttl: 'abc' }));
    await s.holds(5_000, async () => {
      assert.equal(await s.leaderKey(), leader.name);
      assert.ok(leader.pg.facts().writable);
    });
    for (const m of s.members) {
      const snap = m.agent.snapshot();
      assert.equal(m.log.loopFailures, 0, `${m.name}: no loop threw`);
      assert.ok(s.clock.nowMs() - snap.lastOkLoopAtMs < 2 * s.config.loop_wait * 1000 + 100, `${m.name} keeps completing loops`);
      assert.match(snap.view?.invalid.get('members/ghost') ?? '', /tags/, `${m.name} reports the member without tags`);
      assert.match(snap.configProblem ?? '', /ttl/, `${m.name} reports the refused config key`);
      assert.equal(snap.view?.config.ttl, s.config.ttl, `${m.name} keeps the last valid ttl in force`);
    }
    assert.equal(leader.agent.snapshot().reason.code, 'leader-healthy');
    assert.deepEqual(s.members.filter((m) => m !== leader).map((m) => m.agent.snapshot().reason.code), ['replica-streaming', 'replica-streaming']);
  });

  it(
    'keeps its loop running while a long base backup is in flight (the clone runs beside the loop, not inside it)',
    async () => {
      const { s, m2 } = await longCloneInFlight();
      const loopWaitMs = s.config.loop_wait * 1000;
      await s.holds(10_000, () => {
        assert.ok(m2.pg.operationsInFlight() > 0, 'the clone is still in flight');
        const snap = m2.agent.snapshot();
        const sinceMs = s.clock.nowMs() - snap.lastLoopAtMs;
        assert.ok(snap.lastLoopAtMs > 0 && sinceMs <= 2 * loopWaitMs + STEP_MS, snap.lastLoopAtMs === 0 ? 'm2 has completed no loop since its clone began' : `m2's last loop ended ${sinceMs} ms ago, during the clone`);
      });
      await s.healthy(120_000);
    },
  );

  it(
    'stops an agent in the middle of a long base backup within a loop or two: the clone is cancelled, nothing is left running, the member key goes',
    async () => {
      const { s, m2 } = await longCloneInFlight();
      m2.stopped = true;
      const stopping = m2.agent.stop();
      try {
        await s.settle(stopping, 2 * s.config.loop_wait * 1000 + 1_000, 'm2 stopping mid-clone');
      } finally {
        // Whatever the outcome, let the stop finish so the next scenario starts clean.
        await s.settle(stopping, 180_000, 'm2 stopping after its clone');
      }
      assert.equal(m2.pg.operationsInFlight(), 0, 'the clone was cancelled');
      assert.ok(['missing', 'empty'].includes(m2.pg.facts().dataDir), `the half copy is gone (${m2.pg.facts().dataDir})`);
      assert.equal(await s.store.get(PREFIX + KEYS.membersDir + 'm2'), undefined, 'the lease was revoked with the member key');
    },
  );
});
