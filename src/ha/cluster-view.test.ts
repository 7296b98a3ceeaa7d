import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_DYNAMIC_CONFIG } from './dynamic-config.js';
import { clusterPrefix, parseClusterView, type RawKv } from './cluster-view.js';

const P = clusterPrefix('demo');
const TAGS = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };
const member = (name: string, over: Record<string, unknown> = {}) => JSON.stringify({ name, apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: 5432, role: 'replica', state: 'streaming', timeline: 1, walPosition: '0/3000000', tags: TAGS, version: '0.1.0', ...over });
const kv = (key: string, value: string, lease = '0'): RawKv => ({ key: P + key, value, modRevision: 5, lease });

describe('parseClusterView decodes every record and reports the ones it refuses', () => {
  it('keeps valid members and reports a member record without tags (the ghost) instead of passing it on', () => {
    const ghost = JSON.stringify({ name: 'ghost', apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: 1, role: 'replica', state: 'streaming', timeline: 1 });
    const v = parseClusterView(P, 9, [kv('members/demo-1', member('demo-1')), kv('members/ghost', ghost)]);
    assert.deepEqual([...v.members.keys()], ['demo-1']);
    assert.equal(v.invalid.get('members/ghost'), 'tags: is missing');
  });

  const table: ReadonlyArray<[string, string, string, RegExp]> = [
    ['a member whose port is a string', 'members/m', member('m', { port: '5432' }), /^port: must be a number, got "5432"$/],
    ['a member named differently from its key', 'members/m', member('other'), /does not match the key's member name/],
    ['a member with a garbage LSN', 'members/m', member('m', { walPosition: 'zz' }), /walPosition: "zz" is not an LSN/],
    ['a member with an unknown role', 'members/m', member('m', { role: 'boss' }), /role: must be one of "primary", "replica", "uninitialized", got "boss"/],
    ['a sync key without members', 'sync', '{"leader":"m"}', /^members: is missing$/],
    ['a failover request of an unknown kind', 'failover', '{"kind":"coup","requestedAtMs":1}', /^kind: must be one of/],
    ['a history that is not a list', 'history', '{"timeline":2}', /must be a list/],
    ['a status whose LSN is not one', 'status', '{"lsn":"x","timeline":1}', /is not an LSN/],
    ['a leader key with a newline', 'leader', 'a\nb', /not a member name/],
    ['a member record that is not JSON', 'members/m', '{oops', /not valid JSON/],
    ['a leaving key whose members are not names', 'leaving', '{"members":[1]}', /^members\[0\]: must be a string/],
  ];
  it('reads the controller\'s leaving key', () => {
    assert.deepEqual(parseClusterView(P, 9, [kv('leaving', '{"members":["m2"]}')]).leaving?.members, ['m2']);
  });
  for (const [what, key, value, why] of table) {
    it(`refuses ${what}`, () => {
      const v = parseClusterView(P, 9, [kv(key, value)]);
      assert.match(v.invalid.get(key) ?? 'accepted', why);
    });
  }

  it('refuses a config key with a wrong type, an overflowing bound or a broken timing rule, naming the field', () => {
    const of = (c: unknown) => parseClusterView(P, 9, [kv('config', JSON.stringify(c))]);
    assert.match(of({ ttl: 'abc' }).configError ?? '', /^config key: ttl: must be a number > 0 and ≤ 3600, got "abc"$/);
    assert.match(of({ ttl: 1e308 }).configError ?? '', /ttl: must be a number/);
    assert.match(of({ ttl: 2, loop_wait: 5 }).configError ?? '', /loop_wait \+ 2 × retry_timeout must be ≤ ttl/);
    assert.match(of({ pause: 'yes' }).configError ?? '', /pause: must be true or false/);
    assert.match(of({ postgresql: { parameters: { work_mem: { a: 1 } } } }).configError ?? '', /postgresql\.parameters\.work_mem/);
    const bad = of({ ttl: 'abc' });
    assert.deepEqual(bad.config, DEFAULT_DYNAMIC_CONFIG, 'the core never sees the bad values');
    assert.equal(of({ ttl: 30, loop_wait: 10, retry_timeout: 5 }).config.ttl, 30);
  });
});
