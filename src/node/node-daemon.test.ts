import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseControlSnapshot, CONTROL_PREFIX } from '../controller/records.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { parseNodeConfig, type NodeConfig } from '../spec/index.js';
import { NodeDaemon, type NodeLog } from './node-daemon.js';

const quiet: NodeLog = { info: () => undefined, warn: () => undefined, error: () => undefined };
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function config(name: string): Promise<NodeConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-node-'));
  dirs.push(dir);
  const r = parseNodeConfig(`name: ${name}\ndir: ${dir}\netcd:\n  endpoints: [http://127.0.0.1:2379]\nleaseTtlSeconds: 2\ncontroller:\n  enabled: false\nlabels:\n  zone: a\n`, 'node.yaml');
  assert.ok(r.ok);
  return r.config;
}

describe('NodeDaemon registration', () => {
  it('registers the node under its lease with its labels, and removes it on stop', async () => {
    const dcs = new MemoryDcs();
    const d = new NodeDaemon(await config('node-1'), dcs, quiet, undefined);
    await d.start();
    const raw = await dcs.range(CONTROL_PREFIX);
    const node = parseControlSnapshot(raw.revision, raw.kvs).nodes.get('node-1');
    assert.deepEqual(node?.record.labels, { zone: 'a', 'kubernetes.io/hostname': 'node-1' });
    assert.notEqual(node?.lease, '0');
    await d.stop();
    assert.equal((await dcs.range(CONTROL_PREFIX)).kvs.length, 0);
  });

  it('refuses to start a second daemon with the same name while the first is live', async () => {
    const dcs = new MemoryDcs();
    const first = new NodeDaemon(await config('node-1'), dcs, quiet, undefined);
    await first.start();
    try {
      const second = new NodeDaemon(await config('node-1'), dcs, quiet, undefined);
      await assert.rejects(second.start(), /another live node daemon is registered as node-1 \(pid \d+, dir .*\): refusing to start a second one/);
    } finally {
      await first.stop();
    }
  });

  it('starts under the name once the daemon that held it has stopped', async () => {
    const dcs = new MemoryDcs();
    const first = new NodeDaemon(await config('node-1'), dcs, quiet, undefined);
    await first.start();
    await first.stop();
    const second = new NodeDaemon(await config('node-1'), dcs, quiet, undefined);
    await second.start();
    await second.stop();
  });
});
