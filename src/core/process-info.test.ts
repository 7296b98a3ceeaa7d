import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { childPids, isProcessAlive, signalPid, waitForExit } from './process-info.js';

describe('childPids', () => {
  it('lists the live children of a process, and no longer one that has exited', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => undefined, 1000)'], { stdio: 'ignore' });
    try {
      assert.ok(child.pid !== undefined);
      assert.ok((await childPids(process.pid)).includes(child.pid));
      assert.deepEqual(await childPids(child.pid), []);
      const exited = new Promise((r) => child.once('exit', r));
      signalPid(child.pid, 'SIGTERM');
      await exited;
      assert.equal(await waitForExit(child.pid, 5_000), true);
      assert.equal(await isProcessAlive(child.pid), false);
      assert.ok(!(await childPids(process.pid)).includes(child.pid));
    } finally {
      if (child.pid !== undefined) signalPid(child.pid, 'SIGKILL');
    }
  });
});
