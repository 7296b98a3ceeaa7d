import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster } from '../support/cluster.js';
import { fillDatabase, reinitAndWatch } from '../support/long-clone.js';

// "Agent shell" must-show: a clone runs as the operation in flight beside the HA loop. While a
// replica is re-cloned, its /liveness answers 200 throughout and `warden list` shows the clone and
// its progress. The 1 GB figure is measured by bench/long-clone.ts; here 400 MB keeps the suite short.
const SIZE_MB = Number(process.env['WARDEN_TEST_CLONE_MB'] ?? 400);

describe('a long clone: the loop stays alive and shows its progress', { timeout: 900_000 }, () => {
  let root = '';
  let dir = '';

  before(async () => {
    root = await traversableTempDir('warden-clone-');
    const spec = join(root, 'cluster.yaml');
    await writeFile(spec, ['apiVersion: warden.dev/v1', 'kind: Cluster', 'metadata:', '  name: clone', 'spec:', '  instances:', '    - replicas: 2', ''].join('\n'));
    dir = join(root, 'rt');
    const r = await runWarden(['up', '--static', '-f', spec, '--dir', dir], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  });
  after(async () => {
    if (dir !== '') await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it(`re-clones a replica of a ${SIZE_MB} MB database with /liveness 200 throughout and the progress in warden list`, async () => {
    const l = await eventually(async () => {
      const x = await listCluster(dir);
      return x.members.some((m) => m.state === 'streaming') ? x : undefined;
    }, { timeoutMs: 120_000, what: 'a streaming replica' });
    const leader = l.members.find((m) => m.role === 'leader')!;
    const replica = l.members.find((m) => m.role !== 'leader')!;
    const bytes = await fillDatabase(dir, leader.host, leader.port, SIZE_MB);
    assert.ok(bytes > SIZE_MB * 0.9 * 1048576, `database is ${bytes} bytes`);
    const r = await reinitAndWatch(dir, replica, 600_000);
    console.log(`# long clone: ${Math.round(bytes / 1048576)} MB re-cloned in ${r.cloneSeconds.toFixed(1)} s; /liveness ${r.livenessSamples} samples, ${r.livenessNot200} not 200; ${r.operations.length} list samples showed the operation`);
    assert.equal(r.livenessNot200, 0, `/liveness answered something else than 200 in ${r.livenessNot200} of ${r.livenessSamples} samples`);
    const clones = r.operations.filter((o) => o.kind === 'clone');
    assert.ok(clones.length > 0, `warden list never showed the clone (saw ${JSON.stringify(r.operations.map((o) => o.kind))})`);
    const withProgress = clones.filter((o) => o.doneBytes !== null && o.doneBytes > 0 && o.totalBytes !== null && o.percent !== null);
    assert.ok(withProgress.length > 0, `no list sample carried the clone's progress: ${JSON.stringify(clones)}`);
    assert.equal(clones[0]?.source, leader.name);
    const last = r.finalList.members.find((m) => m.name === replica.name);
    assert.equal(last?.state, 'streaming');
  });
});
