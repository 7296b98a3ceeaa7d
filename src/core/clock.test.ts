import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock, runEvery } from './clock.js';

describe('runEvery', () => {
  it('runs now, then an interval after each run has settled, and never after stop()', async () => {
    const clock = new FakeClock();
    const runs: number[] = [];
    let release: (() => void) | undefined;
    const p = runEvery(clock, 1000, () => {
      runs.push(clock.monotonicMs());
      return new Promise<void>((r) => (release = r));
    });
    clock.advance(0);
    assert.deepEqual(runs, [0]);
    clock.advance(5000);
    assert.equal(runs.length, 1, 'no second run while the first has not settled');
    release?.();
    await new Promise((r) => setImmediate(r));
    clock.advance(999);
    assert.equal(runs.length, 1);
    clock.advance(1);
    assert.deepEqual(runs, [0, 6000]);
    p.stop();
    release?.();
    await new Promise((r) => setImmediate(r));
    clock.advance(10_000);
    assert.equal(runs.length, 2);
  });
});
