import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fencingVerdict, type FencingFacts } from './fencing.js';

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
