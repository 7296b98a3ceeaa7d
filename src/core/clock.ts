/** A timer set on a Clock; pass it back to `clearTimer`. */
export interface TimerHandle {
  readonly id: number;
}

/**
 * The source of time for the shell; `src/ha` never reads time itself, it receives `nowMs`.
 * `nowMs` is wall-clock time (what records carry); `monotonicMs` never goes back and is what
 * durations and deadlines are measured with; timers run on the same clock, so a test that moves a
 * FakeClock also fires what is due.
 */
export interface Clock {
  nowMs(): number;
  monotonicMs(): number;
  setTimer(fn: () => void, delayMs: number): TimerHandle;
  clearTimer(handle: TimerHandle | undefined): void;
}

let nextId = 1;
const systemTimers = new Map<number, NodeJS.Timeout>();

/** Wall-clock time, performance.now() for monotonic time, Node's timers. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimer(fn, delayMs) {
    const id = nextId++;
    // Node caps a delay at 2^31 - 1 ms and fires a longer one at once: clamp instead.
    const t = setTimeout(() => {
      systemTimers.delete(id);
      fn();
    }, Math.min(Math.max(0, delayMs), 2 ** 31 - 1));
    systemTimers.set(id, t);
    return { id };
  },
  clearTimer(handle) {
    if (handle === undefined) return;
    const t = systemTimers.get(handle.id);
    if (t !== undefined) clearTimeout(t);
    systemTimers.delete(handle.id);
  },
};

/** A clock that tests move by hand; `advance` fires the timers that come due, in order. */
export class FakeClock implements Clock {
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  private mono = 0;

  constructor(private t = 1_000_000) {}

  nowMs(): number {
    return this.t;
  }

  monotonicMs(): number {
    return this.mono;
  }

  setTimer(fn: () => void, delayMs: number): TimerHandle {
    const id = nextId++;
    this.timers.set(id, { at: this.mono + Math.max(0, delayMs), fn });
    return { id };
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.timers.delete(handle.id);
  }

  /** Timers not fired yet. */
  pendingTimers(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that comes due (including ones they set) at its time. */
  advance(ms: number): void {
    const end = this.mono + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
      if (next === undefined) break;
      this.timers.delete(next[0]);
      this.t += next[1].at - this.mono;
      this.mono = next[1].at;
      next[1].fn();
    }
    this.t += end - this.mono;
    this.mono = end;
  }
}

/** A task run on a clock: once at start, then `intervalMs` after each run has finished (never overlapping). */
export interface Periodic {
  stop(): void;
}

/** Runs `task` now and then every `intervalMs` after it settles, until stopped (a failure of `task` is its own to log). */
export function runEvery(clock: Clock, intervalMs: number, task: () => Promise<void>): Periodic {
  let stopped = false;
  let timer: TimerHandle | undefined;
  const schedule = (delayMs: number): void => {
    if (stopped) return;
    timer = clock.setTimer(() => {
      void task().finally(() => schedule(intervalMs));
    }, delayMs);
  };
  schedule(0);
  return {
    stop() {
      stopped = true;
      clock.clearTimer(timer);
    },
  };
}
