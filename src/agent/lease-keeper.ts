import type { Clock, TimerHandle } from '../core/clock.js';
import { describeError, isWardenError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import type { RenewalVerdict } from '../ha/fencing.js';
import type { Logger } from './logger.js';

const RETRY_SPACING_MS = 50;

/**
 * The lease as the agent knows it: id and the local deadline (send time of last renewal + granted
 * TTL), on the monotonic clock, so that a wall-clock step never moves a fence.
 */
export interface LeaseState {
  readonly id: string;
  /** What etcd granted (it may exceed what was asked: its floor follows its election timeout). */
  readonly ttlMs: number;
  /** What this agent asked for: the `ttl` in force when the lease was granted. */
  readonly requestedTtlMs: number;
  readonly deadlineMonoMs: number;
}

/**
 * Keeps this agent's lease alive on its own ticker, independent of how long an HA action takes,
 * and fires `onDeadline` when the local deadline (minus a margin) passes without a renewal — the
 * guard that fences a primary before etcd can expire the lease anywhere else (invariant 1).
 */
export class LeaseKeeper {
  private lease: LeaseState | undefined;
  private ticker: TimerHandle | undefined;
  private guard: TimerHandle | undefined;
  private inFlight = false;
  private stopped = false;
  /** Why renewals are being withheld (logged once when it starts and once when it ends). */
  private withheld: string | undefined;

  constructor(
    private readonly dcs: Dcs,
    private readonly clock: Clock,
    private readonly opts: {
      ttlMs: () => number;
      intervalMs: () => number;
      callTimeoutMs: () => number;
      marginMs: () => number;
      onDeadline: () => void;
      /** Asked before each renewal (the lease follows the loop, see leaseRenewalVerdict); absent: always renew. */
      mayRenew?: () => RenewalVerdict;
      log: Logger;
    },
  ) {}

  /** The current lease, or undefined when none is held. */
  current(): LeaseState | undefined {
    return this.lease;
  }

  /** The local deadline of the held lease on the wall clock (for records and the API), or undefined. */
  deadlineWallMs(): number | undefined {
    const l = this.lease;
    return l === undefined ? undefined : this.clock.nowMs() + (l.deadlineMonoMs - this.clock.monotonicMs());
  }

  /** Starts renewing every interval. */
  start(): void {
    this.stopped = false;
    this.tick();
  }

  private readonly tick = (): void => {
    if (this.stopped) return;
    this.ticker = undefined;
    const verdict = this.lease === undefined ? undefined : this.opts.mayRenew?.();
    if (verdict !== undefined && !verdict.renew) {
      if (this.withheld === undefined) this.opts.log.error({ leaseId: this.lease?.id }, `lease renewal withheld: ${verdict.why}; the lease will lapse and PostgreSQL be fenced unless this recovers`);
      this.withheld = verdict.why;
      // Asked again soon: one healthy cycle is enough to renew before the deadline.
      this.ticker = this.clock.setTimer(this.tick, Math.min(100, this.renewIntervalMs()));
      return;
    }
    if (this.withheld !== undefined) {
      this.opts.log.info({ leaseId: this.lease?.id }, 'lease renewals resume: the HA loop is healthy again');
      this.withheld = undefined;
    }
    void this.renewOrGrant().then((ok) => {
      // A failed renewal is retried at once (briefly spaced), not a whole interval later: under
      // load one slow etcd answer must not cost the lease while time remains before the deadline.
      if (!this.stopped && this.ticker === undefined) this.ticker = this.clock.setTimer(this.tick, ok ? this.renewIntervalMs() : RETRY_SPACING_MS);
    });
  };

  /** Replaces a pending renewal with one a renewal interval from now (after the lease's TTL changed). */
  private rescheduleRenewal(): void {
    if (this.stopped || this.ticker === undefined) return;
    this.clock.clearTimer(this.ticker);
    this.ticker = this.clock.setTimer(this.tick, this.renewIntervalMs());
  }

  /**
   * How long to wait between renewals: loop_wait, but never more than a quarter of the TTL the
   * lease actually has. After `ttl` changes the held lease keeps its old TTL until it is rotated,
   * and loop_wait may already be sized for the new one (ttl 2 → 30 with loop_wait 10 would
   * otherwise renew a 2 s lease every 10 s).
   */
  renewIntervalMs(): number {
    const l = this.lease;
    return l === undefined ? this.opts.intervalMs() : Math.min(this.opts.intervalMs(), l.ttlMs / 4);
  }

  /** True when the held lease was asked with another TTL than the one now configured. */
  needsRotation(): boolean {
    const l = this.lease;
    return l !== undefined && l.requestedTtlMs !== this.opts.ttlMs();
  }

  /**
   * Moves to a lease with the configured TTL, in the order that never lets the leader key lapse:
   * grant the new lease (the old one keeps being renewed meanwhile), let `moveKeys` re-attach the
   * keys to it (the leader key last, by compare-and-swap), only then take the new lease as the one
   * whose deadline fences this member, and revoke the old one. A failure anywhere keeps the old
   * lease in force and revokes the new one; the caller tries again on a later loop. Shortening the
   * TTL takes effect the moment the leader key moves, so failover is never slower than configured.
   */
  async rotate(moveKeys: (newLeaseId: string, oldLeaseId: string) => Promise<void>): Promise<'rotated' | 'failed' | 'none'> {
    const old = this.lease;
    if (old === undefined) return 'none';
    const want = this.opts.ttlMs();
    const sentAt = this.clock.monotonicMs();
    const timeoutMs = this.opts.callTimeoutMs();
    let grant: { id: string; ttlMs: number };
    try {
      grant = await this.dcs.grantLease(want, { timeoutMs });
    } catch (e) {
      this.opts.log.warn({ err: describeError(e) }, 'lease rotation: granting a lease with the new ttl failed; the old lease stays in force');
      return 'failed';
    }
    try {
      if (this.lease?.id !== old.id) throw new Error('the lease changed meanwhile');
      await moveKeys(grant.id, old.id);
    } catch (e) {
      this.opts.log.warn({ err: describeError(e) }, 'lease rotation: moving the keys to the new lease failed; the old lease stays in force');
      await this.dcs.revokeLease(grant.id, { timeoutMs }).catch(() => undefined);
      return 'failed';
    }
    this.setLease({ id: grant.id, ttlMs: grant.ttlMs, requestedTtlMs: want, deadlineMonoMs: sentAt + grant.ttlMs });
    // The pending renewal was timed for the old TTL: 30 s → 2 s would otherwise wait 7.5 s to renew
    // a 2 s lease.
    this.rescheduleRenewal();
    this.opts.log.info({ leaseId: grant.id, ttlMs: grant.ttlMs, previousLeaseId: old.id, previousTtlMs: old.ttlMs }, `ttl change in force: lease of ${grant.ttlMs} ms`);
    // An empty old lease that cannot be revoked now simply expires.
    await this.dcs.revokeLease(old.id, { timeoutMs }).catch((e: unknown) => this.opts.log.warn({ err: describeError(e) }, 'lease rotation: revoking the old lease failed; it will expire'));
    return 'rotated';
  }

  /** Renews the lease now (or grants one when none is held); never throws; true when it succeeded. */
  async renewOrGrant(): Promise<boolean> {
    if (this.inFlight) return true;
    this.inFlight = true;
    const sentAt = this.clock.monotonicMs();
    // Never wait past the point where the guard would fence anyway.
    const timeoutMs = this.lease === undefined ? this.opts.callTimeoutMs() : Math.max(100, Math.min(this.opts.callTimeoutMs(), this.lease.deadlineMonoMs - this.opts.marginMs() - sentAt));
    try {
      if (this.lease === undefined) {
        const want = this.opts.ttlMs();
        const g = await this.dcs.grantLease(want, { timeoutMs });
        this.setLease({ id: g.id, ttlMs: g.ttlMs, requestedTtlMs: want, deadlineMonoMs: sentAt + g.ttlMs });
        this.opts.log.info({ leaseId: g.id, ttlMs: g.ttlMs }, 'lease granted');
      } else {
        const id = this.lease.id;
        const r = await this.dcs.keepAlive(id, { timeoutMs });
        // The lease may have been replaced while this call was in flight.
        const held = this.lease;
        if (held?.id === id) this.setLease({ ...held, ttlMs: r.ttlMs, deadlineMonoMs: sentAt + r.ttlMs });
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
    this.clock.clearTimer(this.ticker);
    this.clock.clearTimer(this.guard);
  }

  private setLease(l: LeaseState): void {
    this.lease = l;
    this.clock.clearTimer(this.guard);
    const delay = Math.max(0, l.deadlineMonoMs - this.opts.marginMs() - this.clock.monotonicMs());
    this.guard = this.clock.setTimer(() => {
      if (this.lease === l) {
        this.opts.log.error({ leaseId: l.id }, 'lease deadline reached without a renewal');
        this.opts.onDeadline();
      }
    }, delay);
  }

  private clearLease(): void {
    this.lease = undefined;
    this.clock.clearTimer(this.guard);
  }
}
