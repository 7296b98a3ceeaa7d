import type { Clock } from '../core/clock.js';
import { sleep } from '../core/deadline.js';
import { describeError } from '../core/errors.js';
import type { Dcs, KeyValue, WatchEvent } from '../dcs/dcs.js';
import type { RawKv } from '../ha/index.js';

/** The logging surface the router uses (pino's shape). */
export interface RouterLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** What the source reports to its owner. */
export interface ClusterSourceListener {
  /** The keys under the prefix changed (by a watch event or a read). */
  changed(): void;
  /** A linearizable read succeeded; `sentAtMs` is when it was sent (the conservative end of what it proves). */
  confirmed(sentAtMs: number): void;
  /** A read failed; the owner keeps its last state until the confirmation grows too old. */
  readFailed(error: unknown): void;
}

export interface ClusterSourceOptions {
  readonly clock: Clock;
  readonly log: RouterLogger;
  /** Pause between confirming reads (re-read each time: the ttl may change). */
  readonly confirmIntervalMs: () => number;
  /** Bound on each read. */
  readonly readTimeoutMs: () => number;
}

/**
 * Keeps a copy of every key under one cluster prefix: a watch (resumed from the last applied
 * revision) delivers changes within milliseconds, and a periodic range read both confirms that etcd
 * still answers (a quorum read) and repairs whatever a stalled or broken watch missed. Reads and
 * events are ordered by revision, so an older answer never overwrites a newer one.
 */
export class ClusterSource {
  private readonly kvs = new Map<string, KeyValue>();
  private appliedRevision = 0;
  private readonly stopAbort = new AbortController();
  private watchAbort: AbortController | undefined;
  private loops: Promise<void>[] = [];
  /** Consecutive reads that found changes the watch had not delivered. */
  private readsAheadOfWatch = 0;
  private failing = false;
  private wakeConfirm: (() => void) | undefined;

  constructor(
    private readonly dcs: Dcs,
    readonly prefix: string,
    private readonly opts: ClusterSourceOptions,
    private readonly listener: ClusterSourceListener,
  ) {}

  /** The current keys as raw pairs (for parseClusterView) and the revision they reflect. */
  snapshot(): { revision: number; kvs: RawKv[] } {
    return { revision: this.appliedRevision, kvs: [...this.kvs.values()] };
  }

  /** One confirming range read; throws when etcd does not answer in time. */
  async read(): Promise<void> {
    const sentAtMs = this.opts.clock.nowMs();
    const snap = await this.dcs.range(this.prefix, { timeoutMs: this.opts.readTimeoutMs(), signal: this.stopAbort.signal });
    if (snap.revision >= this.appliedRevision) {
      const changed = !sameKvs(this.kvs, snap.kvs);
      this.readsAheadOfWatch = changed && this.appliedRevision > 0 ? this.readsAheadOfWatch + 1 : 0;
      this.kvs.clear();
      for (const kv of snap.kvs) this.kvs.set(kv.key, kv);
      this.appliedRevision = snap.revision;
      if (changed) this.listener.changed();
    }
    if (this.failing) {
      this.failing = false;
      this.opts.log.info({ revision: snap.revision }, 'etcd answers again');
    }
    this.listener.confirmed(sentAtMs);
    // Two reads in a row found changes the watch never delivered: it hangs on a dead member; restart it.
    if (this.readsAheadOfWatch >= 2) {
      this.readsAheadOfWatch = 0;
      this.opts.log.warn({ revision: this.appliedRevision }, 'the watch missed changes; restarting it');
      this.watchAbort?.abort();
    }
  }

  /** Starts the confirm loop and the watch loop (after a first read, or at once when there is none yet). */
  start(): void {
    this.loops = [this.confirmLoop(), this.watchLoop()];
  }

  async stop(): Promise<void> {
    this.stopAbort.abort();
    this.watchAbort?.abort();
    this.wakeConfirm?.();
    await Promise.allSettled(this.loops);
  }

  private async confirmLoop(): Promise<void> {
    const signal = this.stopAbort.signal;
    while (!signal.aborted) {
      try {
        await this.read();
      } catch (e) {
        if (signal.aborted) return;
        if (!this.failing) {
          this.failing = true;
          this.opts.log.warn({ err: describeError(e) }, 'cannot read the cluster from etcd; the leader stays trusted for one ttl after the last answer');
        }
        this.listener.readFailed(e);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.opts.confirmIntervalMs());
        this.wakeConfirm = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeConfirm = undefined;
    }
  }

  private async watchLoop(): Promise<void> {
    const signal = this.stopAbort.signal;
    let backoffMs = 50;
    while (!signal.aborted) {
      if (this.appliedRevision === 0) {
        // Nothing read yet: the confirm loop's first answer gives the revision to watch from.
        await sleep(50, signal).catch(() => undefined);
        continue;
      }
      const abort = new AbortController();
      this.watchAbort = abort;
      const onStop = (): void => abort.abort();
      signal.addEventListener('abort', onStop, { once: true });
      const from = this.appliedRevision + 1;
      try {
        await this.dcs.watch(this.prefix, from, (events) => this.apply(events), abort.signal);
        backoffMs = 50;
      } catch (e) {
        if (signal.aborted) return;
        this.opts.log.debug({ err: describeError(e), from }, 'watch ended; re-reading and resuming');
        // A compacted or broken watch: read now (this also confirms), then resume from that revision.
        this.wakeConfirm?.();
        await sleep(backoffMs, signal).catch(() => undefined);
        backoffMs = Math.min(1000, backoffMs * 2);
      } finally {
        signal.removeEventListener('abort', onStop);
      }
    }
  }

  private apply(events: readonly WatchEvent[]): void {
    // Every event of one revision arrives in one batch (a lease revoke deletes leader and member keys
    // at the same revision), so the threshold is fixed before the batch is applied.
    const base = this.appliedRevision;
    let changed = false;
    for (const ev of events) {
      if (ev.kv.modRevision <= base) continue;
      if (ev.type === 'delete') this.kvs.delete(ev.kv.key);
      else this.kvs.set(ev.kv.key, ev.kv);
      this.appliedRevision = Math.max(this.appliedRevision, ev.kv.modRevision);
      changed = true;
    }
    if (changed) {
      this.readsAheadOfWatch = 0;
      this.listener.changed();
    }
  }
}

function sameKvs(current: ReadonlyMap<string, KeyValue>, next: readonly KeyValue[]): boolean {
  if (current.size !== next.length) return false;
  return next.every((kv) => current.get(kv.key)?.modRevision === kv.modRevision);
}
