import type { Clock } from '../core/clock.js';
import { describeError, isWardenError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import type { Logger } from './logger.js';

const RETRY_SPACING_MS = 50;

/** The lease as the agent knows it: id and the local deadline (send time of last renewal + granted TTL). */
export interface LeaseState {
  readonly id: string;
  readonly ttlMs: number;
  readonly deadlineMs: number;
}

/**
 * Keeps this agent's lease alive on its own ticker, independent of how long an HA action takes,
 * and fires `onDeadline` when the local deadline (minus a margin) passes without a renewal — the
 * guard that fences a primary before etcd can expire the lease anywhere else (invariant 1).
 */
export class LeaseKeeper {
  private lease: LeaseState | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private guard: NodeJS.Timeout | undefined;
  private inFlight = false;
  private stopped = false;

  constructor(
    private readonly dcs: Dcs,
    private readonly clock: Clock,
    private readonly opts: {
      ttlMs: () => number;
      intervalMs: () => number;
      callTimeoutMs: () => number;
      marginMs: () => number;
      onDeadline: () => void;
      log: Logger;
    },
  ) {}

  /** The current lease, or undefined when none is held. */
  current(): LeaseState | undefined {
    return this.lease;
  }

  /** Starts renewing every interval. */
  start(): void {
    this.stopped = false;
    const tick = (): void => {
      if (this.stopped) return;
      void this.renewOrGrant().then((ok) => {
        // A failed renewal is retried at once (briefly spaced), not a whole interval later: under
        // load one slow etcd answer must not cost the lease while time remains before the deadline.
        if (!this.stopped) this.ticker = setTimeout(tick, ok ? this.opts.intervalMs() : RETRY_SPACING_MS);
      });
    };
    tick();
  }

  /** Renews the lease now (or grants one when none is held); never throws; true when it succeeded. */
  async renewOrGrant(): Promise<boolean> {
    if (this.inFlight) return true;
    this.inFlight = true;
    const sentAt = this.clock.nowMs();
    // Never wait past the point where the guard would fence anyway.
    const timeoutMs = this.lease === undefined ? this.opts.callTimeoutMs() : Math.max(100, Math.min(this.opts.callTimeoutMs(), this.lease.deadlineMs - this.opts.marginMs() - sentAt));
    try {
      if (this.lease === undefined) {
        const g = await this.dcs.grantLease(this.opts.ttlMs(), { timeoutMs });
        this.setLease({ id: g.id, ttlMs: g.ttlMs, deadlineMs: sentAt + g.ttlMs });
        this.opts.log.info({ leaseId: g.id, ttlMs: g.ttlMs }, 'lease granted');
      } else {
        const id = this.lease.id;
        const r = await this.dcs.keepAlive(id, { timeoutMs });
        // The lease may have been replaced while this call was in flight.
        if (this.lease?.id === id) this.setLease({ id, ttlMs: r.ttlMs, deadlineMs: sentAt + r.ttlMs });
      }
      return true;
    } catch (e) {
      if (isWardenError(e, 'lease-not-found')) {
        this.opts.log.warn({ leaseId: this.lease?.id }, 'lease lost: it expired or was revoked');
        this.clearLease();
        this.opts.onDeadline();
      } else {
        this.opts.log.warn({ err: describeError(e) }, 'lease renewal failed');
      }
      return false;
    } finally {
      this.inFlight = false;
    }
  }

  /** Revokes the lease (graceful shutdown: the leader key goes at once, so others need not wait for the TTL). */
  async revoke(): Promise<void> {
    const l = this.lease;
    this.clearLease();
    if (l !== undefined) await this.dcs.revokeLease(l.id, { timeoutMs: this.opts.callTimeoutMs() });
  }

  /** Stops the ticker and the guard. */
  stop(): void {
    this.stopped = true;
    if (this.ticker) clearTimeout(this.ticker);
    if (this.guard) clearTimeout(this.guard);
  }

  private setLease(l: LeaseState): void {
    this.lease = l;
    if (this.guard) clearTimeout(this.guard);
    const delay = Math.max(0, l.deadlineMs - this.opts.marginMs() - this.clock.nowMs());
    this.guard = setTimeout(() => {
      if (this.lease === l) {
        this.opts.log.error({ leaseId: l.id }, 'lease deadline reached without a renewal');
        this.opts.onDeadline();
      }
    }, delay);
  }

  private clearLease(): void {
    this.lease = undefined;
    if (this.guard) clearTimeout(this.guard);
  }
}
