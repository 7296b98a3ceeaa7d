import { systemClock } from '../core/clock.js';
import type { Clock } from '../core/clock.js';
import { WardenError } from '../core/errors.js';
import type { CallOptions, Dcs, KeyValue, LeaseGrant, Snapshot, WatchEvent, WriteOptions } from './dcs.js';

interface Lease {
  readonly ttlMs: number;
  expiresAtMs: number;
}

interface Watcher {
  readonly prefix: string;
  readonly onEvents: (events: readonly WatchEvent[], revision: number) => void;
  readonly fail: (e: unknown) => void;
}

/** One write transaction's events, kept so a watch can start from an earlier revision. */
interface Batch {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

/**
 * An in-memory Dcs with etcd's semantics (one revision per write transaction, create/mod revisions and
 * versions, leases that delete their keys, resumable watches); leases expire by the injected clock.
 */
export class MemoryDcs implements Dcs {
  private readonly clock: Clock;
  private readonly defaultTimeoutMs: number;
  private readonly minLeaseTtlMs: number;
  private readonly kvs = new Map<string, KeyValue>();
  private readonly leases = new Map<string, Lease>();
  private readonly watchers = new Set<Watcher>();
  private history: Batch[] = [];
  private revision = 1;
  private compactRevision = 0;
  private nextLeaseId = 7_587_000_000_000_001;
  private available = true;
  private stalled = false;
  private readonly stallWaiters = new Set<() => void>();

  constructor(opts: { clock?: Clock; defaultTimeoutMs?: number; minLeaseTtlMs?: number } = {}) {
    this.clock = opts.clock ?? systemClock;
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 5_000;
    this.minLeaseTtlMs = opts.minLeaseTtlMs ?? 1_000;
  }

  /** While false, every call throws 'dcs-unavailable' and running watches reject, like a lost etcd. */
  setAvailable(available: boolean): void {
    this.available = available;
    if (available) return;
    const e = unavailable();
    for (const w of [...this.watchers]) w.fail(e);
  }

  /** While true, calls hang until their timeout ('dcs-timeout') or signal, like an etcd that stopped answering. */
  setStalled(stalled: boolean): void {
    this.stalled = stalled;
    if (stalled) return;
    for (const wake of [...this.stallWaiters]) wake();
  }

  /** Expires every lease whose deadline has passed by the clock, deleting its keys (also run by every call). */
  expireLeases(): void {
    const now = this.clock.nowMs();
    for (const [id, lease] of [...this.leases]) if (lease.expiresAtMs <= now) this.dropLease(id);
  }

  /** Forgets history before `revision`; watches from an earlier revision then fail as compacted. */
  compact(revision: number): void {
    this.compactRevision = Math.max(this.compactRevision, Math.min(revision, this.revision));
    this.history = this.history.filter((b) => b.revision >= this.compactRevision);
  }

  async range(prefix: string, opts?: CallOptions): Promise<Snapshot> {
    await this.enter(opts);
    const kvs = [...this.kvs.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => compareKeys(a.key, b.key));
    return { revision: this.revision, kvs };
  }

  async get(key: string, opts?: CallOptions): Promise<KeyValue | undefined> {
    await this.enter(opts);
    return this.kvs.get(key);
  }

  async put(key: string, value: string, opts?: WriteOptions): Promise<number> {
    await this.enter(opts);
    this.write([{ type: 'put', key, value, leaseId: opts?.leaseId }]);
    return this.revision;
  }

  async create(key: string, value: string, opts?: WriteOptions): Promise<boolean> {
    await this.enter(opts);
    if (this.kvs.has(key)) return false;
    this.write([{ type: 'put', key, value, leaseId: opts?.leaseId }]);
    return true;
  }

  async compareAndSwap(key: string, value: string, expectModRevision: number, opts?: WriteOptions): Promise<boolean> {
    await this.enter(opts);
    if ((this.kvs.get(key)?.modRevision ?? 0) !== expectModRevision) return false;
    this.write([{ type: 'put', key, value, leaseId: opts?.leaseId }]);
    return true;
  }

  async delete(key: string, opts?: CallOptions & { expectModRevision?: number }): Promise<boolean> {
    await this.enter(opts);
    const kv = this.kvs.get(key);
    if (opts?.expectModRevision !== undefined && (kv?.modRevision ?? 0) !== opts.expectModRevision) return false;
    if (kv === undefined) return false;
    this.write([{ type: 'delete', key }]);
    return true;
  }

  async grantLease(ttlMs: number, opts?: CallOptions): Promise<LeaseGrant> {
    await this.enter(opts);
    // Like etcd: whole seconds, raised to the store's minimum.
    const grantedMs = Math.max(Math.ceil(ttlMs / 1000) * 1000, this.minLeaseTtlMs);
    const id = String(this.nextLeaseId++);
    this.leases.set(id, { ttlMs: grantedMs, expiresAtMs: this.clock.nowMs() + grantedMs });
    return { id, ttlMs: grantedMs };
  }

  async keepAlive(leaseId: string, opts?: CallOptions): Promise<{ ttlMs: number }> {
    await this.enter(opts);
    const lease = this.leases.get(leaseId);
    if (lease === undefined) throw leaseNotFound(leaseId);
    lease.expiresAtMs = this.clock.nowMs() + lease.ttlMs;
    return { ttlMs: lease.ttlMs };
  }

  /** Revokes `leaseId`; a lease that is already gone counts as revoked (as EtcdClient does). */
  async revokeLease(leaseId: string, opts?: CallOptions): Promise<void> {
    await this.enter(opts);
    this.dropLease(leaseId);
  }

  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: readonly WatchEvent[], revision: number) => void,
    signal: AbortSignal,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return resolve();
      if (!this.available) return reject(unavailable());
      if (fromRevision > 0 && fromRevision < this.compactRevision) {
        const message = `watch on ${prefix} from ${fromRevision} ended: compacted at revision ${this.compactRevision}`;
        return reject(
          new WardenError('dcs-unavailable', message, {
            retryable: true,
            details: { prefix, fromRevision, compactRevision: this.compactRevision },
          }),
        );
      }
      const stop = (): void => {
        this.watchers.delete(watcher);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        stop();
        resolve();
      };
      const watcher: Watcher = {
        prefix,
        // Delivered in a microtask, never inside the write that caused it, as with a real stream; a
        // throwing callback ends the watch, as it does with EtcdClient.
        onEvents: (events, revision) =>
          queueMicrotask(() => {
            if (signal.aborted || !this.watchers.has(watcher)) return;
            try {
              onEvents(events, revision);
            } catch (e) {
              watcher.fail(e);
            }
          }),
        fail: (e) => {
          stop();
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.watchers.add(watcher);
      for (const batch of this.history) {
        if (fromRevision <= 0 || batch.revision < fromRevision) continue;
        const events = batch.events.filter((e) => e.kv.key.startsWith(prefix));
        if (events.length > 0) watcher.onEvents(events, batch.revision);
      }
    });
  }

  close(): void {
    for (const w of [...this.watchers]) w.fail(new WardenError('dcs-unavailable', 'memory DCS closed', { retryable: true }));
  }

  /** Every call starts here: availability, deadline and lease expiry, in that order. */
  private async enter(opts: CallOptions | undefined): Promise<void> {
    if (opts?.signal?.aborted) throw timeout('aborted by caller');
    if (this.stalled) await this.waitWhileStalled(opts);
    if (!this.available) throw unavailable();
    this.expireLeases();
  }

  private waitWhileStalled(opts: CallOptions | undefined): Promise<void> {
    const timeoutMs = opts?.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise((resolve, reject) => {
      const done = (error?: WardenError): void => {
        clearTimeout(timer);
        opts?.signal?.removeEventListener('abort', onAbort);
        this.stallWaiters.delete(wake);
        if (error) reject(error);
        else resolve();
      };
      const wake = (): void => done();
      const onAbort = (): void => done(timeout('aborted by caller'));
      const timer = setTimeout(() => done(timeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      this.stallWaiters.add(wake);
    });
  }

  private dropLease(id: string): void {
    if (!this.leases.delete(id)) return;
    const keys = [...this.kvs.values()].filter((kv) => kv.lease === id).map((kv) => kv.key);
    this.write(keys.map((key) => ({ type: 'delete', key })));
  }

  /** Applies one write transaction: one new revision for all of `ops`, none when nothing changes. */
  private write(ops: readonly ({ type: 'put'; key: string; value: string; leaseId: string | undefined } | { type: 'delete'; key: string })[]): void {
    for (const op of ops) {
      if (op.type === 'put' && op.leaseId !== undefined && op.leaseId !== '0' && !this.leases.has(op.leaseId)) {
        throw leaseNotFound(op.leaseId);
      }
    }
    const revision = this.revision + 1;
    const events: WatchEvent[] = [];
    for (const op of ops) {
      const prev = this.kvs.get(op.key);
      if (op.type === 'delete') {
        if (prev === undefined) continue;
        this.kvs.delete(op.key);
        events.push({ type: 'delete', kv: { key: op.key, value: '', createRevision: 0, modRevision: revision, version: 0, lease: '0' } });
        continue;
      }
      const kv: KeyValue = {
        key: op.key,
        value: op.value,
        createRevision: prev?.createRevision ?? revision,
        modRevision: revision,
        version: (prev?.version ?? 0) + 1,
        lease: op.leaseId ?? '0',
      };
      this.kvs.set(op.key, kv);
      events.push({ type: 'put', kv });
    }
    if (events.length === 0) return;
    this.revision = revision;
    this.history.push({ revision, events });
    if (this.history.length > MAX_HISTORY) this.compact(this.history[this.history.length - MAX_HISTORY]!.revision);
    for (const w of this.watchers) {
      const mine = events.filter((e) => e.kv.key.startsWith(w.prefix));
      if (mine.length > 0) w.onEvents(mine, revision);
    }
  }
}

/** Write transactions kept for watches before older ones are compacted away. */
const MAX_HISTORY = 10_000;

/** etcd orders keys by their bytes. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function unavailable(): WardenError {
  return new WardenError('dcs-unavailable', 'memory DCS is unavailable', { retryable: true });
}

function timeout(message: string): WardenError {
  return new WardenError('dcs-timeout', `memory DCS: ${message}`, { retryable: true });
}

function leaseNotFound(id: string): WardenError {
  return new WardenError('lease-not-found', `lease ${id} has expired or was revoked`);
}
