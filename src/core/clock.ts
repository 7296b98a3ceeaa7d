/** The source of time for the shell; `src/ha` never reads time itself, it receives `nowMs`. */
export interface Clock {
  nowMs(): number;
}

/** Wall-clock time in milliseconds. */
export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock that tests move by hand. */
export class FakeClock implements Clock {
  constructor(private t = 1_000_000) {}
  nowMs(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
