import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fencingVerdict, leaseRenewalVerdict, renewalHeartbeatMs, type FencingFacts } from './fencing.js';

const base: FencingFacts = { nowMs: 10_000, failsafeUntilMs: 0, wasLeader: false, inRecovery: true, configuredAsPrimary: false };

describe('fencing when the lease deadline passes', () => {
  const table: ReadonlyArray<[string, Partial<FencingFacts>, 'fence' | 'spare']> = [
    ['fences the leader', { wasLeader: true }, 'fence'],
    ['fences a server answering read-write even without the key', { inRecovery: false }, 'fence'],
    ['fences the race winner whose lease deadline passes during its own promotion (configured primary, no answer yet)', { configuredAsPrimary: true, inRecovery: undefined }, 'fence'],
    ['fences a leader whose server does not answer', { wasLeader: true, inRecovery: undefined }, 'fence'],
    ['spares a replica', {}, 'spare'],
    ['spares a replica that does not answer', { inRecovery: undefined }, 'spare'],
    ['spares the leader while every member confirmed failsafe', { wasLeader: true, inRecovery: false, failsafeUntilMs: 12_000 }, 'spare'],
    ['fences the leader once the failsafe window has passed', { wasLeader: true, inRecovery: false, failsafeUntilMs: 9_000 }, 'fence'],
  ];
  for (const [name, over, want] of table) {
    it(name, () => assert.equal(fencingVerdict({ ...base, ...over }).kind, want));
  }
});

describe('leaseRenewalVerdict: the lease follows the loop', () => {
  const base = { nowMonoMs: 100_000, lastOkCycleMonoMs: 99_500, heartbeatMs: renewalHeartbeatMs(2), holdsLeaderKey: true, paused: false, servesAsPrimary: true, operationInFlight: false };

  it('renews for a leader whose loop cycles and whose PostgreSQL answers as primary', () => {
    assert.deepEqual(leaseRenewalVerdict(base), { renew: true });
  });

  it('withholds a leader whose loop has not completed a cycle for 2 × ttl (wedged, or every cycle failed)', () => {
    const v = leaseRenewalVerdict({ ...base, lastOkCycleMonoMs: 100_000 - 4_001 });
    assert.equal(v.renew, false);
    assert.match(v.renew ? '' : v.why, /has not completed a cycle for 4001 ms \(limit 4000 ms\)/);
    assert.deepEqual(leaseRenewalVerdict({ ...base, lastOkCycleMonoMs: 100_000 - 4_000 }), { renew: true });
  });

  it('withholds a leader whose PostgreSQL does not answer as primary, unless an operation decide() let run is in flight or the cluster is paused', () => {
    assert.equal(leaseRenewalVerdict({ ...base, servesAsPrimary: false }).renew, false);
    assert.equal(leaseRenewalVerdict({ ...base, servesAsPrimary: false, operationInFlight: true }).renew, true);
    assert.equal(leaseRenewalVerdict({ ...base, servesAsPrimary: false, paused: true }).renew, true);
    assert.equal(leaseRenewalVerdict({ ...base, servesAsPrimary: false, paused: true, lastOkCycleMonoMs: 0 }).renew, false, 'pause does not keep a dead loop leader');
  });

  it('always renews for a member without the leader key (its lease carries only its member key)', () => {
    assert.deepEqual(leaseRenewalVerdict({ ...base, holdsLeaderKey: false, servesAsPrimary: false, lastOkCycleMonoMs: 0 }), { renew: true });
  });

  it('heartbeat limit is 2 × ttl with a floor of 1 s', () => {
    assert.equal(renewalHeartbeatMs(2), 4000);
    assert.equal(renewalHeartbeatMs(0.2), 1000);
  });
});
