/**
 * The chaos writer: inserts unique, increasing values into chaos_writes and records, for every
 * acknowledged INSERT, the member and timeline it committed on — read by the same statement
 * (INSERT … RETURNING), so no second query can race a failover — and every write whose outcome it
 * does not know. Two lanes share one value sequence:
 *   - main: follows the primary (a target provider: whoever answers /primary, or a router);
 *   - probe: every probeIntervalMs, one fresh-connection INSERT on each *other* known member, so that
 *     a second writable primary is caught even when no client would be sent to it.
 * Every connect and statement is bounded; nothing here retries beyond the next loop iteration.
 */
import pg from 'pg';
import type { AckedWrite, FailedWrite } from './checker.js';

/** Where to send writes: a PostgreSQL address, and the member name when the caller knows it. */
export interface WriteTarget {
  readonly host: string;
  readonly port: number;
  readonly member?: string;
}

/** Answers where the primary is now (undefined: no primary known); must settle within timeoutMs. */
export type TargetProvider = (timeoutMs: number) => Promise<WriteTarget | undefined>;

export interface WriterOptions {
  readonly target: TargetProvider;
  /** Members the probe lane tries (every one but the main lane's current target); empty: no probing. */
  readonly probeTargets?: () => readonly WriteTarget[];
  /** Maps the server's address (inet_server_addr, inet_server_port) to a member name. */
  readonly memberOf: (host: string, port: number) => string | undefined;
  readonly user: string;
  readonly password: string;
  readonly database?: string;
  readonly table?: string;
  /** 'persistent' keeps one connection while it works; 'fresh' opens one per write. */
  readonly connection?: 'persistent' | 'fresh';
  readonly connectTimeoutMs?: number;
  readonly statementTimeoutMs?: number;
  /** Pause between two writes of the main lane. */
  readonly intervalMs?: number;
  readonly probeIntervalMs?: number;
  /** The main lane asks the provider again this often even while its connection works. */
  readonly retargetMs?: number;
  /** Bound on one provider call (default 250 ms: a frozen member must not hold up the next write long). */
  readonly targetTimeoutMs?: number;
  readonly nowMs?: () => number;
}

/** The writer's SQL for one value: member and timeline come from the server that commits it. */
export function insertStatement(table: string): string {
  return (
    `INSERT INTO ${table}(v, member, tl) VALUES ($1, ` +
    `coalesce(nullif(current_setting('cluster_name', true), ''), inet_server_addr()::text || ':' || inet_server_port()), ` +
    `('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int) ` +
    `RETURNING v::text AS v, tl, member, host(inet_server_addr()) AS addr, inet_server_port() AS port, pg_current_wal_lsn()::text AS lsn`
  );
}

/** CREATE TABLE for the writer (idempotent). */
export function createTableStatement(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (v bigint PRIMARY KEY, member text NOT NULL, tl int NOT NULL, at timestamptz NOT NULL DEFAULT now())`;
}

const READ_ONLY = '25006';

/** A running writer; stop() ends both lanes and returns what was recorded. */
export class ChaosWriter {
  readonly acks: AckedWrite[] = [];
  readonly failures: FailedWrite[] = [];
  private next: number;
  private stopping = false;
  private lanes: Promise<void>[] = [];
  private current: { target: WriteTarget; client: pg.Client | undefined; since: number } | undefined;
  private readonly table: string;
  private readonly now: () => number;
  /** Rejections that prove nothing committed (read-only replica, refused connection), counted only. */
  rejected = 0;
  lastError = '';

  constructor(
    private readonly opts: WriterOptions,
    firstValue: number,
  ) {
    this.next = firstValue;
    this.table = opts.table ?? 'chaos_writes';
    this.now = opts.nowMs ?? (() => performance.now());
  }

  /** The first value this writer used; final reads select values from here on. */
  get nextValue(): number {
    return this.next;
  }

  start(): void {
    this.lanes = [this.mainLane()];
    if (this.opts.probeTargets !== undefined) this.lanes.push(this.probeLane());
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.lanes);
    await this.dropConnection();
  }

  /** Acks recorded so far whose sent time is at or after tMs. */
  acksSince(tMs: number): AckedWrite[] {
    return this.acks.filter((a) => a.sentAtMs >= tMs);
  }

  private async mainLane(): Promise<void> {
    const interval = this.opts.intervalMs ?? 5;
    const retarget = this.opts.retargetMs ?? 1000;
    while (!this.stopping) {
      if (this.current === undefined || this.now() - this.current.since > retarget) {
        const t = await this.opts.target(this.opts.targetTimeoutMs ?? 250).catch(() => undefined);
        if (t === undefined) {
          if (this.current === undefined) await pause(50);
        } else if (this.current === undefined || t.host !== this.current.target.host || t.port !== this.current.target.port) {
          await this.dropConnection();
          this.current = { target: t, client: undefined, since: this.now() };
        } else {
          this.current.since = this.now();
        }
      }
      const cur = this.current;
      if (cur === undefined) continue;
      const ok = this.opts.connection === 'fresh' ? await this.writeFresh(cur.target, 'main') : await this.writePersistent(cur);
      if (!ok) {
        // Ask the provider again at once: the primary may have moved.
        await this.dropConnection();
        this.current = undefined;
        await pause(20);
      } else if (interval > 0) await pause(interval);
    }
  }

  private async probeLane(): Promise<void> {
    const interval = this.opts.probeIntervalMs ?? 200;
    while (!this.stopping) {
      const main = this.current?.target;
      const others = (this.opts.probeTargets?.() ?? []).filter((t) => main === undefined || t.host !== main.host || t.port !== main.port);
      await Promise.all(others.map((t) => this.writeFresh(t, 'probe')));
      await pause(interval);
    }
  }

  private async writePersistent(cur: { target: WriteTarget; client: pg.Client | undefined }): Promise<boolean> {
    if (cur.client === undefined) {
      const c = this.client(cur.target);
      try {
        await c.connect();
      } catch (e) {
        this.noteRejection(e);
        destroy(c);
        return false;
      }
      cur.client = c;
    }
    return this.insert(cur.client, cur.target, 'main');
  }

  private async writeFresh(target: WriteTarget, lane: string): Promise<boolean> {
    const c = this.client(target);
    try {
      await c.connect();
    } catch (e) {
      this.noteRejection(e);
      destroy(c);
      return false;
    }
    try {
      return await this.insert(c, target, lane);
    } finally {
      destroy(c);
    }
  }

  private async insert(c: pg.Client, target: WriteTarget, lane: string): Promise<boolean> {
    const value = this.next++;
    const sentAtMs = this.now();
    try {
      const res = await c.query<{ v: string; tl: number; member: string; addr: string | null; port: number; lsn: string }>(insertStatement(this.table), [value]);
      const ackAtMs = this.now();
      const row = res.rows[0];
      if (row === undefined) throw new Error('INSERT … RETURNING returned no row');
      const member = (row.addr === null ? undefined : this.opts.memberOf(row.addr, Number(row.port))) ?? target.member ?? row.member;
      this.acks.push({ value, member, timeline: Number(row.tl), lsn: row.lsn, sentAtMs, ackAtMs, lane });
      return true;
    } catch (e) {
      const err = e as Error & { code?: string };
      if (err.code === READ_ONLY) {
        this.rejected++; // a replica: the statement was refused before anything was written
      } else {
        this.failures.push({ value, target: target.member ?? `${target.host}:${target.port}`, sentAtMs, failedAtMs: this.now(), error: err.message, lane });
        this.lastError = err.message;
      }
      if (this.current?.client === c) this.current.client = undefined;
      destroy(c);
      return false;
    }
  }

  private client(t: WriteTarget): pg.Client {
    const statementMs = this.opts.statementTimeoutMs ?? 2000;
    const c = new pg.Client({
      host: t.host,
      port: t.port,
      user: this.opts.user,
      password: this.opts.password,
      database: this.opts.database ?? 'postgres',
      connectionTimeoutMillis: this.opts.connectTimeoutMs ?? 1000,
      // Client side bound (a frozen server never answers) and server side bound (it gives up too).
      query_timeout: statementMs,
      statement_timeout: statementMs,
      application_name: 'warden-chaos',
      keepAlive: true,
    });
    c.on('error', (e) => {
      this.lastError = e.message;
    });
    return c;
  }

  private noteRejection(e: unknown): void {
    this.rejected++;
    this.lastError = e instanceof Error ? e.message : String(e);
  }

  private async dropConnection(): Promise<void> {
    const c = this.current?.client;
    if (this.current !== undefined) this.current.client = undefined;
    if (c !== undefined) destroy(c);
  }
}

/** Closes a client without waiting on a server that may be frozen. */
function destroy(c: pg.Client): void {
  try {
    c.connection.stream.destroy();
  } catch {
    // never connected: nothing to close
  }
  void c.end().catch(() => undefined);
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Connection settings shared by setup and final reads. */
export interface PgAddress {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database?: string;
}

/** Runs one statement on a fresh bounded connection. */
export async function queryOnce<R extends Record<string, unknown>>(a: PgAddress, text: string, params: unknown[] = [], timeoutMs = 5000): Promise<R[]> {
  const c = new pg.Client({
    host: a.host,
    port: a.port,
    user: a.user,
    password: a.password,
    database: a.database ?? 'postgres',
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'warden-chaos',
  });
  c.on('error', () => undefined); // the awaited calls below report it
  try {
    await c.connect();
    return (await c.query<R>(text, params)).rows;
  } finally {
    destroy(c);
  }
}

/** Creates the table on the primary and returns the first value this run may use (past any earlier run's). */
export async function prepareTable(primary: PgAddress, table = 'chaos_writes'): Promise<number> {
  await queryOnce(primary, createTableStatement(table));
  const rows = await queryOnce<{ m: string }>(primary, `SELECT coalesce(max(v), 0)::text AS m FROM ${table}`);
  return Number(rows[0]?.m ?? 0) + 1;
}

/** The values from `fromValue` on, read from a server that must be a primary (not in recovery). */
export async function readFinalValues(primary: PgAddress, fromValue: number, table = 'chaos_writes'): Promise<number[]> {
  const r = await queryOnce<{ r: boolean }>(primary, 'SELECT pg_is_in_recovery() AS r');
  if (r[0]?.r !== false) throw new Error(`${primary.host}:${primary.port} is not a primary: cannot read the final table from it`);
  const rows = await queryOnce<{ v: string }>(primary, `SELECT v::text AS v FROM ${table} WHERE v >= $1 ORDER BY v`, [fromValue], 15_000);
  return rows.map((x) => Number(x.v));
}
