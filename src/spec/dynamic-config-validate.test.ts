import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DYNAMIC_CONFIG, synchronousCountProblem } from '../ha/dynamic-config.js';
import { validateDynamicConfig } from './dynamic-config-validate.js';

const errorsOf = (candidate: unknown): string[] => {
  const r = validateDynamicConfig(candidate);
  return r.ok ? [] : r.errors;
};

describe('dynamic config edits are refused before anything is written', () => {
  it('bounds ttl: 100000000 and 1e308 overflow timers and leases', () => {
    assert.match(errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, ttl: 100_000_000 }).join('\n'), /^ttl: must be a number > 0 and ≤ 3600 \(got 100000000\)$/m);
    assert.match(errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, ttl: 1e308 }).join('\n'), /^ttl: must be a number > 0 and ≤ 3600/m);
    assert.match(errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, ttl: 'abc' }).join('\n'), /^ttl: must be a number/m);
    assert.match(errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, loop_wait: 1e9 }).join('\n'), /^loop_wait: must be a number > 0 and ≤ 3600/m);
    assert.match(errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, primary_start_timeout: 1e12 }).join('\n'), /^primary_start_timeout: must be a number from 0 to 86400/m);
    assert.match(errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, synchronous_node_count: 100 }).join('\n'), /^synchronous_node_count: must be an integer from 1 to 64/m);
  });

  it('accepts a valid timing change, including ttl 30 with loop_wait 10 and retry_timeout 5', () => {
    const r = validateDynamicConfig({ ...DEFAULT_DYNAMIC_CONFIG, ttl: 30, loop_wait: 10, retry_timeout: 5 });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.config.ttl, 30);
  });

  it('refuses PostgreSQL parameter values PostgreSQL would refuse, naming the parameter', () => {
    const withParams = (parameters: Record<string, unknown>) => ({ ...DEFAULT_DYNAMIC_CONFIG, postgresql: { use_pg_rewind: true, parameters } });
    assert.match(errorsOf(withParams({ max_connections: -1 })).join('\n'), /^postgresql\.parameters\.max_connections: -1 is outside the valid range/m);
    assert.match(errorsOf(withParams({ max_connections: 'abc' })).join('\n'), /invalid value for parameter "max_connections": "abc"/);
    assert.match(errorsOf(withParams({ work_mem: '4MB\nfsync = off' })).join('\n'), /control characters/);
    assert.deepEqual(errorsOf(withParams({ work_mem: '8MB', max_connections: 300 })), []);
  });

  it('refuses an explicit edit of a parameter Warden manages instead of answering "no change"', () => {
    const r = errorsOf({ ...DEFAULT_DYNAMIC_CONFIG, postgresql: { use_pg_rewind: true, parameters: { port: 6000 } } });
    assert.match(r.join('\n'), /^postgresql\.parameters\.port: set by Warden for each member; it cannot be set cluster-wide$/m);
  });
});

describe('synchronous_node_count against the cluster size', () => {
  const sync = (n: number) => ({ ...DEFAULT_DYNAMIC_CONFIG, synchronous_mode: 'on' as const, synchronous_node_count: n });
  it('refuses an edit asking for more synchronous standbys than there are replicas', () => {
    assert.match(synchronousCountProblem(sync(1), sync(100), 3) ?? '', /synchronous_node_count: 100 is more than the cluster's 2 replica\(s\) \(3 members\): at most 2 can be synchronous/);
  });
  it('accepts a count the cluster can honour, asynchronous mode, and edits that leave the count alone', () => {
    assert.equal(synchronousCountProblem(sync(1), sync(2), 3), undefined);
    assert.equal(synchronousCountProblem(DEFAULT_DYNAMIC_CONFIG, { ...DEFAULT_DYNAMIC_CONFIG, synchronous_node_count: 5 }, 3), undefined);
    // The cluster shrank under a valid setting: unrelated edits are not blocked.
    assert.equal(synchronousCountProblem(sync(3), { ...sync(3), loop_wait: 0.4 }, 2), undefined);
  });
});
