import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readStateFile, type StateFile } from '../../src/controller/state-file.js';
import { isProcessAlive, signalPid } from '../../src/core/process-info.js';
import { runWarden, traversableTempDir } from './cli.js';

/**
 * A `warden up --nodes` runtime dir under test: `state()` reads state.json and remembers every PID it
 * names (supervisor, node daemons, agents, routers), so that `cleanup()` — `warden down --purge`,
 * then SIGKILL by PID of whatever still runs — leaves nothing behind even when a case failed.
 */
export class NodesRuntimeUnderTest {
  dir = '';
  runtime = '';
  readonly pids = new Set<number>();

  async create(prefix: string): Promise<void> {
    this.dir = await traversableTempDir(prefix);
    this.runtime = join(this.dir, 'rt');
  }

  async state(): Promise<StateFile> {
    const s = await readStateFile(this.runtime);
    assert.ok(s !== undefined, 'no state.json');
    for (const p of [s.supervisorPid, ...(s.nodes ?? []).map((n) => n.pid), ...s.members.map((m) => m.agentPid), ...(s.routers ?? []).map((r) => r.pid ?? null)]) if (typeof p === 'number') this.pids.add(p);
    return s;
  }

  /** `beforeRemove` runs after the processes are gone and before the dir is removed. */
  async cleanup(beforeRemove: () => void = () => undefined): Promise<void> {
    if (this.runtime !== '') await runWarden(['down', '--dir', this.runtime, '--purge'], { timeoutMs: 240_000 });
    // Anything still alive that the test saw started is ended by its PID.
    for (const pid of this.pids) if (await isProcessAlive(pid)) signalPid(pid, 'SIGKILL');
    beforeRemove();
    if (this.dir !== '') await rm(this.dir, { recursive: true, force: true });
  }
}
