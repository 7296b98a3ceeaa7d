import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readLayout } from './runtime-layout.js';
import { readStateFile, writeStateFile, type StateFile } from './state-file.js';

const state = (n: number): StateFile => ({
  cluster: 'demo',
  etcd: ['http://127.0.0.1:1'],
  superuser: 'postgres',
  pgpassFile: '/x/pgpass',
  members: [{ name: 'demo-1', apiUrl: 'http://127.0.0.1:2', host: '127.0.0.1', port: 3, dataDir: '/x', agentPid: n }],
  router: null,
  supervisorPid: 1,
});

describe('state.json and runtime.json', () => {
  it('lands concurrent writes in call order, each through its own temp file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-state-'));
    try {
      await Promise.all(Array.from({ length: 25 }, (_, i) => writeStateFile(dir, state(i + 1))));
      const back = await readStateFile(dir);
      assert.equal(back?.members[0]?.agentPid, 25);
      assert.deepEqual((await readdir(dir)).sort(), ['state.json']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the file and the field when valid JSON has the wrong shape', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-state-'));
    try {
      await writeFile(join(dir, 'state.json'), JSON.stringify({ ...state(1), etcd: 'http://x' }));
      await assert.rejects(readStateFile(dir), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'config-invalid');
        assert.equal(e.message, `${join(dir, 'state.json')}: etcd: must be a list, got "http://x"`);
        return true;
      });
      await writeFile(join(dir, 'state.json'), JSON.stringify({ ...state(1), members: [{ name: 'demo-1' }] }));
      await assert.rejects(readStateFile(dir), /state\.json: members\[0\]\.apiUrl: is missing/);
      await writeFile(join(dir, 'state.json'), '{"cluster":');
      await assert.rejects(readStateFile(dir), /state\.json: not valid JSON/);
      await writeFile(join(dir, 'runtime.json'), JSON.stringify({ cluster: 'demo', etcd: [] }));
      await assert.rejects(readLayout(dir), /runtime\.json: etcd: must be an object, got a list/);
      assert.match(await readFile(join(dir, 'runtime.json'), 'utf8'), /demo/, 'a bad file is reported, never rewritten');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
