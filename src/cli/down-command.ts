import { rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { signalPid, waitForExit } from '../core/process-info.js';
import { findOrphans, stopOrphans } from '../controller/orphans.js';
import { layoutPath, readLayout } from '../controller/runtime-layout.js';
import { runningSupervisor } from '../controller/local-up.js';
import { removeNodesNetwork } from '../controller/local-nodes.js';
import { readStateFile } from '../controller/state-file.js';

/** `warden down [--purge]`: stops what `up` started in DIR, by PID, and with --purge removes the data. */
export async function runDown(opts: { dir?: string; purge: boolean }): Promise<number> {
  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  const dir = resolve(opts.dir ?? '.warden');
  const layout = await readLayout(dir);
  if (layout === undefined) {
    out(`nothing to stop: ${dir} holds no Warden runtime (no runtime.json)`);
    return 0;
  }
  const sup = await runningSupervisor(dir);
  let stoppedSomething = false;
  if (sup !== undefined) {
    out(`stopping cluster ${layout.cluster} (supervisor pid ${sup}): agents stop PostgreSQL, then etcd stops…`);
    signalPid(sup, 'SIGTERM');
    if (!(await waitForExit(sup, 120_000))) {
      out(`supervisor ${sup} did not exit within 120 s; killing it`);
      signalPid(sup, 'SIGKILL');
    }
    stoppedSomething = true;
  }
  // Whatever the state file still records as ours and alive (a supervisor killed by hand): stop it by PID.
  const orphans = await stopOrphans(await findOrphans(layout, await readStateFile(dir)));
  if (orphans.length > 0) {
    out(`stopped what a dead supervisor left running: ${orphans.map((o) => `${o.what} (pid ${o.pid})`).join(', ')}`);
    stoppedSomething = true;
  }
  out(stoppedSomething ? 'stopped' : `nothing running in ${dir}`);
  // `--netns`: the namespaces go with the processes (`up` builds them again).
  const network = removeNodesNetwork(layout);
  if (network !== undefined) out(`removed the network namespaces ${network}`);
  if (opts.purge) {
    // Only a directory that `warden up` created is removed.
    if (existsSync(layoutPath(dir))) {
      // etcd's data may live outside DIR (in /dev/shm): remove what the layout names.
      for (const m of layout.etcd.members) {
        await rm(m.dataDir, { recursive: true, force: true });
        const parent = dirname(m.dataDir);
        if (parent.startsWith('/dev/shm/warden-etcd-')) await rm(parent, { recursive: true, force: true });
      }
      await rm(join(dir), { recursive: true, force: true });
      out(`removed ${dir}`);
    }
  }
  return 0;
}
