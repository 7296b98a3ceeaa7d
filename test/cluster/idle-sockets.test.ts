import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, holdsFor } from '../../src/core/deadline.js';
import type { ListOutput } from '../../src/cli/list.js';
import { REPO, runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, readState, sql } from '../support/cluster.js';

const FLOOD_SECONDS = 60;
const SOCKETS_PER_PORT = 2000;

/** Runs one flooder child over `targets`; resolves with its per-target figures. */
function flood(targets: readonly string[]): Promise<Record<string, { open: number; opened: number; closedByServer: number; errors: number; minOpen: number }>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test', 'support', 'idle-flood.ts'), String(FLOOD_SECONDS), String(SOCKETS_PER_PORT), '3000', ...targets], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), (FLOOD_SECONDS + 60) * 1000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(guard);
      if (code !== 0) return reject(new Error(`flooder exited ${code}`));
      resolve(JSON.parse(out) as Record<string, { open: number; opened: number; closedByServer: number; errors: number; minOpen: number }>);
    });
  });
}

// Hardening, rows 5 and 13: 2,000 idle sockets on every port Warden listens on (agents' REST APIs,
// etcd's client and peer ports, the router's read-write, read-only and admin ports) for 60 s. The
// leader keeps its lease, a superuser connects straight to PostgreSQL, and new clients get through
// the router. PostgreSQL's own ports are not flooded: PostgreSQL forks a process per connection
// before the startup packet and caps them itself (2 × max_connections, authentication_timeout).
describe('2,000 idle sockets on every listening port for 60 s', { timeout: 600_000 }, () => {
  let dir = '';
  const list = (): Promise<ListOutput> => listCluster(dir);

  before(async () => {
    dir = await traversableTempDir('warden-idle-');
    const r = await runWarden(['up', '--static', '--dir', dir], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    await eventually(async () => {
      const l = await list();
      return l.members.filter((m) => m.state === 'streaming').length === 2 ? l : undefined;
    }, { timeoutMs: 60_000, what: 'a healthy cluster' });
  });
  after(async () => {
    if (dir !== '') {
      await runWarden(['down', '--dir', dir, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps the leader, direct superuser connections and new clients through the router working', async () => {
    const state = await readState(dir);
    const layout = JSON.parse(await readFile(join(dir, 'runtime.json'), 'utf8')) as { etcd: { members: { clientUrl: string; peerUrl: string }[] } };
    const hostPort = (url: string): string => new URL(url).host;
    const router = state.router!;
    const targets = [
      ...state.members.map((m) => hostPort(m.apiUrl)),
      ...layout.etcd.members.flatMap((m) => [hostPort(m.clientUrl), hostPort(m.peerUrl)]),
      `${router.rw.host}:${router.rw.port}`,
      `${router.ro.host}:${router.ro.port}`,
      `${router.admin!.host}:${router.admin!.port}`,
    ];
    const before = await list();
    const leader = before.members.find((m) => m.role === 'leader')!;
    const half = Math.ceil(targets.length / 2);
    const flooding = Promise.all([flood(targets.slice(0, half)), flood(targets.slice(half))]);
    const failures: string[] = [];
    // The first rounds run while the flooders fill the ports; every round must pass.
    const checks = await holdsFor(async () => {
      await sql(dir, leader.host, leader.port, 'SELECT 1').catch((e: unknown) => failures.push(`direct superuser: ${String(e)}`));
      await sql(dir, router.rw.host, router.rw.port, 'SELECT 1').catch((e: unknown) => failures.push(`through the router: ${String(e)}`));
      const l = await list().catch((e: unknown) => {
        failures.push(`warden list: ${String(e)}`);
        return undefined;
      });
      if (l !== undefined && l.members.find((m) => m.role === 'leader')?.name !== leader.name) failures.push(`leader changed to ${l.members.find((m) => m.role === 'leader')?.name ?? 'nobody'}`);
    }, { durationMs: FLOOD_SECONDS * 1000 - 3000, intervalMs: 2000 });
    const [a, b] = await flooding;
    const figures = { ...a, ...b };
    process.stdout.write(`# idle-socket flood: ${checks} checks; per port ${JSON.stringify(figures)}\n`);
    assert.deepEqual(failures, []);
    assert.ok(checks >= 10, `only ${checks} checks ran`);
    for (const t of targets) {
      assert.ok((figures[t]?.opened ?? 0) >= SOCKETS_PER_PORT, `${t}: only ${figures[t]?.opened ?? 0} sockets opened`);
    }
    const h = await runWarden(['history', '--dir', dir, '--format', 'json'], { timeoutMs: 20_000 });
    assert.deepEqual(JSON.parse(h.stdout), [], 'no failover during the flood');
  });
});
