import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runWarden, traversableTempDir } from '../support/cli.js';

// Hardening, row 4: a bootstrap that keeps failing (here a server that cannot start: a preload
// library that does not exist, which only PostgreSQL itself can tell) stops after a bound with a
// clear error, instead of moving a data directory aside every ~1.3 s until the disk is full.
describe('a bootstrap that keeps failing stops after a bound', { timeout: 600_000 }, () => {
  let dir = '';
  after(async () => {
    if (dir !== '') {
      // The runtime lives in DIR/rt: stop it there (its supervisor, etcd and agents), then remove all.
      for (const rt of ['rt', 'rt-nodes']) {
        const down = await runWarden(['down', '--dir', join(dir, rt), '--purge'], { timeoutMs: 120_000 });
        assert.equal(down.code, 0, `${down.stdout}\n${down.stderr}`);
      }
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('warden up exits 1 with the reason, and each member moved at most 3 directories aside', async () => {
    dir = await traversableTempDir('warden-bootfail-');
    const spec = join(dir, 'cluster.yaml');
    await writeFile(
      spec,
      ['apiVersion: warden.dev/v1', 'kind: Cluster', 'metadata:', '  name: bootfail', 'spec:', '  instances:', '    - replicas: 2', '  patroni:', '    dynamicConfiguration:', '      postgresql:', '        parameters:', '          shared_preload_libraries: no_such_library_here', ''].join('\n'),
    );
    const started = Date.now();
    const r = await runWarden(['up', '--static', '-f', spec, '--dir', join(dir, 'rt')], { timeoutMs: 300_000 });
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /the cluster could not be bootstrapped: bootstrap failed 3 times/);
    assert.ok(Date.now() - started < 200_000, 'up gave up before its own 240 s timeout');
    for (const m of ['bootfail-1', 'bootfail-2']) {
      const entries = await readdir(join(dir, 'rt', 'members', m)).catch(() => []);
      const aside = entries.filter((e) => e.startsWith('data.moved-'));
      assert.ok(aside.length <= 3, `${m}: ${aside.length} directories moved aside`);
    }
    // The agents report what they moved aside (nothing deletes it): GET /patroni warden.movedAside.
    const layout = JSON.parse(await readFile(join(dir, 'rt', 'runtime.json'), 'utf8')) as { members: { name: string; host: string; apiPort: number }[] };
    const reported = await Promise.all(layout.members.map(async (m) => {
      const res = await fetch(`http://${m.host}:${m.apiPort}/patroni`, { signal: AbortSignal.timeout(5000) });
      return ((await res.json()) as { warden?: { movedAside?: string[] } }).warden?.movedAside ?? [];
    }));
    assert.ok(reported.some((r) => r.length > 0), 'the moved-aside directories are reported');
    assert.ok(reported.every((r) => r.length <= 3));
  });

  it('on node daemons too: warden up exits 1 with the reason once every member gave up, not at its timeout', async () => {
    const spec = join(dir, 'cluster.yaml');
    const started = Date.now();
    const r = await runWarden(['up', '-f', spec, '--dir', join(dir, 'rt-nodes')], { timeoutMs: 300_000 });
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /node daemons/);
    assert.match(r.stderr, /the cluster could not be bootstrapped: bootstrap failed 3 times/);
    assert.ok(Date.now() - started < 200_000, 'up gave up before its own 240 s timeout');
  });
});
