import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, holdsFor } from '../core/deadline.js';
import { isProcessAlive, signalPid } from '../core/process-info.js';
import { assignmentKey, backupsFingerprint, parseControlSnapshot, secretsKey, CONTROL_KEYS, CONTROL_PREFIX, type Assignment, type ClusterSecrets, type WorkloadStatus } from '../controller/records.js';
import type { WriteOptions } from '../dcs/dcs.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { parseNodeConfig, type NodeConfig } from '../spec/index.js';
import { lastOutputLine, NodeDaemon, type NodeLog } from './node-daemon.js';

const quiet: NodeLog = { info: () => undefined, warn: () => undefined, error: () => undefined };
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function config(name: string, extra = ''): Promise<NodeConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-node-'));
  dirs.push(dir);
  const r = parseNodeConfig(`name: ${name}\ndir: ${dir}\netcd:\n  endpoints: [http://127.0.0.1:2379]\nleaseTtlSeconds: 2\ncontroller:\n  enabled: false\nlabels:\n  zone: a\n${extra}`, 'node.yaml');
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

describe('NodeDaemon after a crash: workloads left running', () => {
  // A crashed daemon's agents keep running (they are not in its process group's way once it is
  // gone); the next run finds them through their PID files. Stand-ins here are idle node processes
  // whose command line names the workload's config file, as a real agent's does.
  const procs: ChildProcess[] = [];
  after(() => {
    for (const p of procs) if (p.pid !== undefined) signalPid(p.pid, 'SIGKILL');
  });

  const member = (name: string, uid: string): Assignment => ({
    cluster: 'app',
    kind: 'member',
    name,
    node: 'node-1',
    clusterUid: uid,
    generation: 1,
    agent: { instanceSet: 'instance1', bootstrapDynamicConfig: {} },
    reason: 'placed by the test',
  });

  /** A member directory as an earlier run leaves it, with a live stand-in for its agent. */
  async function leftover(nodeDir: string, name: string, uid: string): Promise<{ dir: string; pid: number }> {
    const dir = join(nodeDir, 'workloads', 'app', 'members', name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'workload.json'), JSON.stringify({ cluster: 'app', clusterUid: uid, kind: 'member', name, ports: [15432, 18008] }));
    await writeFile(join(dir, 'agent.yaml'), 'name: stand-in\n');
    const p = spawn(process.execPath, ['-e', 'setInterval(() => undefined, 1000)', join(dir, 'agent.yaml')], { stdio: 'ignore' });
    procs.push(p);
    assert.ok(p.pid !== undefined);
    await writeFile(join(dir, 'pid'), `${p.pid}\n`);
    return { dir, pid: p.pid };
  }

  it('adopts a member still assigned here (same PID, watched), stops and moves aside one no longer assigned, and restarts an adopted one that dies', async () => {
    const cfg = await config('node-1', 'restartDelaySeconds: 60\n');
    const dcs = new MemoryDcs();
    const kept = await leftover(cfg.dir, 'app-1', 'uid-1');
    const stale = await leftover(cfg.dir, 'app-9', 'uid-1');
    await dcs.put(assignmentKey('app', 'member', 'app-1'), JSON.stringify(member('app-1', 'uid-1')));
    const d = new NodeDaemon(cfg, dcs, quiet, undefined);
    await d.start();
    try {
      const adopted = await eventually(() => d.running().find((w) => w.key === 'app/members/app-1' && w.state === 'running'), { timeoutMs: 10_000, what: 'app-1 adopted' });
      assert.equal(adopted.pid, kept.pid);
      assert.equal(adopted.dir, kept.dir);
      // Published in the node record with the adopted PID and the agent's address from its marker.
      await eventually(async () => {
        const raw = await dcs.range(CONTROL_PREFIX);
        const w = parseControlSnapshot(raw.revision, raw.kvs).nodes.get('node-1')?.record.workloads.find((x) => x.name === 'app-1');
        return w?.pid === kept.pid && w.address === `http://${cfg.address}:18008` ? true : undefined;
      }, { timeoutMs: 10_000, what: 'app-1 published with its adopted PID' });
      // The one nothing assigns here is stopped by its PID and its data moved aside, not deleted.
      await eventually(async () => (!(await isProcessAlive(stale.pid)) ? true : undefined), { timeoutMs: 10_000, what: 'app-9 stopped' });
      await eventually(async () => (!existsSync(stale.dir) ? true : undefined), { timeoutMs: 10_000, what: 'app-9 moved away' });
      const aside = await readdir(join(cfg.dir, 'moved-aside'));
      assert.ok(aside.some((n) => n.startsWith('app-app-9-')), aside.join(', '));
      assert.equal(await isProcessAlive(kept.pid), true);
      // An adopted process is not our child: its death is noticed through /proc, then it is restarted after the delay.
      signalPid(kept.pid, 'SIGKILL');
      const gone = await eventually(() => d.running().find((w) => w.key === 'app/members/app-1' && w.state === 'restarting'), { timeoutMs: 10_000, what: 'app-1 seen gone' });
      assert.equal(gone.pid, undefined);
      const published = await eventually(async () => {
        const r = await dcs.range(CONTROL_PREFIX);
        return parseControlSnapshot(r.revision, r.kvs).nodes.get('node-1')?.record.workloads.find((x) => x.name === 'app-1' && x.state === 'restarting');
      }, { timeoutMs: 10_000, what: 'app-1 published as restarting' });
      assert.equal(published.restarts, 1);
      assert.match(published.lastError ?? '', new RegExp(`the adopted member \\(pid ${kept.pid}\\) is gone`));
    } finally {
      await d.stop();
    }
  });

  it('does not adopt a process of another cluster uid: it is stopped and the workload prepared afresh', async () => {
    const cfg = await config('node-1', 'restartDelaySeconds: 60\n');
    const dcs = new MemoryDcs();
    const old = await leftover(cfg.dir, 'app-1', 'uid-old');
    await dcs.put(assignmentKey('app', 'member', 'app-1'), JSON.stringify(member('app-1', 'uid-new')));
    const d = new NodeDaemon(cfg, dcs, quiet, undefined);
    await d.start();
    try {
      await eventually(async () => (!(await isProcessAlive(old.pid)) ? true : undefined), { timeoutMs: 10_000, what: 'the old uid\'s process stopped' });
      // Started afresh: the old uid's data is moved aside first; without the cluster's secrets in etcd the start then fails, with the reason.
      const failed = await eventually(() => d.running().find((w) => w.key === 'app/members/app-1' && w.state === 'failed'), { timeoutMs: 10_000, what: 'app-1 started afresh' });
      assert.equal(failed.pid, undefined);
      const aside = await readdir(join(cfg.dir, 'moved-aside'));
      assert.ok(aside.some((n) => n.startsWith('app-app-1-')), aside.join(', '));
    } finally {
      await d.stop();
    }
  });

  it('publishes one node record at a time, so that a slow put cannot overwrite a newer record', async () => {
    // Each put of the node key takes a random time before etcd applies it: two in flight at once
    // could land in either order. The daemon must never have two in flight, and etcd must end with
    // the record of what the daemon runs now.
    class SlowNodePuts extends MemoryDcs {
      inFlight = 0;
      maxInFlight = 0;
      override async put(key: string, value: string, opts?: WriteOptions): Promise<number> {
        if (!key.startsWith(CONTROL_KEYS.nodesDir)) return super.put(key, value, opts);
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        try {
          await new Promise((r) => setTimeout(r, Math.random() * 150));
          return await super.put(key, value, opts);
        } finally {
          this.inFlight--;
        }
      }
    }
    const cfg = await config('node-1', 'restartDelaySeconds: 60\n');
    const dcs = new SlowNodePuts();
    const lefts = [await leftover(cfg.dir, 'app-1', 'uid-1'), await leftover(cfg.dir, 'app-2', 'uid-1'), await leftover(cfg.dir, 'app-3', 'uid-1')];
    for (const n of ['app-1', 'app-2', 'app-3']) await dcs.put(assignmentKey('app', 'member', n), JSON.stringify(member(n, 'uid-1')));
    const d = new NodeDaemon(cfg, dcs, quiet, undefined);
    await d.start();
    try {
      // Three adoptions, each publishing at once, alongside the passes' own publishes.
      await eventually(() => (d.running().filter((w) => w.state === 'running').length === 3 ? true : undefined), { timeoutMs: 10_000, what: 'three members adopted' });
      // Then three deaths in quick succession, each publishing again.
      for (const l of lefts) signalPid(l.pid, 'SIGKILL');
      await eventually(() => (d.running().filter((w) => w.state === 'restarting').length === 3 ? true : undefined), { timeoutMs: 10_000, what: 'three members seen gone' });
      const stored = await eventually(async () => {
        const r = await dcs.range(CONTROL_PREFIX);
        const ws = parseControlSnapshot(r.revision, r.kvs).nodes.get('node-1')?.record.workloads ?? [];
        return ws.length === 3 && ws.every((w) => w.state === 'restarting' && w.pid === null) ? ws : undefined;
      }, { timeoutMs: 10_000, what: 'the record of three restarting members' });
      assert.equal(stored.length, 3);
      // Stays so: no older record lands after it.
      await holdsFor(async () => {
        const r = await dcs.range(CONTROL_PREFIX);
        assert.ok(parseControlSnapshot(r.revision, r.kvs).nodes.get('node-1')?.record.workloads.every((w) => w.state === 'restarting'));
      }, { durationMs: 500, intervalMs: 50 });
      assert.equal(dcs.maxInFlight, 1);
    } finally {
      await d.stop();
    }
  });

  it('new backups settings a node cannot run (no backups.repo_path) leave the running member as it is, with the reason published', async () => {
    const cfg = await config('node-1', 'restartDelaySeconds: 60\n');
    const dcs = new MemoryDcs();
    const secrets: ClusterSecrets = { superuser: { username: 'postgres', password: 's' }, replication: { username: 'replicator', password: 'r' }, restApi: { username: 'warden', password: 'a' } };
    await dcs.put(secretsKey('app'), JSON.stringify(secrets));
    const kept = await leftover(cfg.dir, 'app-1', 'uid-1');
    await dcs.put(assignmentKey('app', 'member', 'app-1'), JSON.stringify(member('app-1', 'uid-1')));
    const d = new NodeDaemon(cfg, dcs, quiet, undefined);
    await d.start();
    try {
      await eventually(() => d.running().find((w) => w.key === 'app/members/app-1' && w.state === 'running'), { timeoutMs: 10_000, what: 'app-1 adopted' });
      const published = async (): Promise<WorkloadStatus | undefined> => {
        const r = await dcs.range(CONTROL_PREFIX);
        return parseControlSnapshot(r.revision, r.kvs).nodes.get('node-1')?.record.workloads.find((x) => x.name === 'app-1');
      };
      assert.equal((await eventually(published, { timeoutMs: 10_000, what: 'app-1 published' })).backups, backupsFingerprint(undefined));
      // The controller's roll rewrites its assignment with spec.backups.
      const base = member('app-1', 'uid-1');
      await dcs.put(assignmentKey('app', 'member', 'app-1'), JSON.stringify({ ...base, generation: 2, agent: { ...base.agent, backups: { stanza: 'app', repos: ['repo1'], global: {} } } }));
      const refused = await eventually(async () => {
        const w = await published();
        return w?.lastError?.includes('not applied here') === true ? w : undefined;
      }, { timeoutMs: 10_000, what: 'the refusal published' });
      assert.match(refused.lastError ?? '', /the new spec\.backups settings are not applied here \(it keeps running with the former ones\): .*no backups\.repo_path/);
      // Still the former settings, still the same process: the roll waits on it, nothing went down.
      assert.equal(refused.backups, backupsFingerprint(undefined));
      assert.equal(refused.pid, kept.pid);
      assert.equal(await isProcessAlive(kept.pid), true);
    } finally {
      await d.stop();
    }
  });

  it('a stop right after the start stops the workloads it found left running, whether the first pass ran or not', async () => {
    const cfg = await config('node-1');
    const dcs = new MemoryDcs();
    const left = await leftover(cfg.dir, 'app-1', 'uid-1');
    const d = new NodeDaemon(cfg, dcs, quiet, undefined);
    await d.start();
    await d.stop();
    assert.equal(await isProcessAlive(left.pid), false);
  });
});

describe('lastOutputLine', () => {
  it('gives the last line a workload wrote, leaving out Node\'s own warnings, bounded in length', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warden-out-'));
    try {
      const file = join(dir, 'agent.out');
      await writeFile(file, `${'noise\n'.repeat(2000)}/x/agent.yaml:18:3: postgresql.socket_dir: the Unix socket path is 113 bytes\nWarning: disabling flag --expose_wasm due to conflicting flags\n\n`);
      assert.equal(await lastOutputLine(file), '/x/agent.yaml:18:3: postgresql.socket_dir: the Unix socket path is 113 bytes');
      await writeFile(file, `${'y'.repeat(1000)}\n`);
      assert.equal((await lastOutputLine(file))?.length, 300);
      await writeFile(file, '');
      assert.equal(await lastOutputLine(file), undefined);
      assert.equal(await lastOutputLine(join(dir, 'missing.out')), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
