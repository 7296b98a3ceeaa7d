import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { signalPid, waitForExit } from '../core/process-info.js';

// How Warden starts its own processes as children (the supervisor of `warden up`, and `warden
// node`): the same build, output appended to a file, waited on by the parent (nothing else reaps
// orphans here), stopped by PID with SIGTERM and then SIGKILL.

/**
 * argv that runs this same Warden build (bundled or under tsx) with `args`. `nodeFlags` are added
 * only for the bundled build: under a loader (tsx) they could break the loader itself.
 */
export function wardenArgv(args: readonly string[], nodeFlags: readonly string[] = []): { command: string; args: string[] } {
  const script = process.argv[1];
  if (script === undefined) throw new Error('cannot tell how Warden was started (no argv[1])');
  const underLoader = process.execArgv.some((a) => /^--(import|loader|experimental-loader|require)\b/.test(a) || a === '-r');
  return { command: process.execPath, args: [...process.execArgv, ...(underLoader ? [] : nodeFlags), script, ...args] };
}

/**
 * V8 flags of the agents: lite mode (interpreter only, lazily allocated feedback) takes about 9 MB
 * off each agent's RSS, and an agent runs a loop every loop_wait, not hot code. It rules out
 * WebAssembly, so nothing on the agent's path may load undici (fetch, web Request/Response).
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--lite-mode'];

/**
 * Starts `warden <args>` with stdout and stderr appended to `outFile`, inside network namespace
 * `netns` when given. `detached` gives it a session
 * of its own (setsid): with Linux's autogroup scheduling it then gets a CPU share of its own. The
 * caller must listen for 'exit' (and 'error') and wait on it.
 */
export function spawnWarden(args: readonly string[], outFile: string, opts: { nodeFlags?: readonly string[]; detached?: boolean; argv?: typeof wardenArgv; netns?: string } = {}): ChildProcess {
  const w = (opts.argv ?? wardenArgv)(args, opts.nodeFlags ?? []);
  // `ip netns exec` execs the program in the namespace: the child's PID is Warden's own.
  const { command, args: argv } = opts.netns === undefined ? w : { command: 'ip', args: ['netns', 'exec', opts.netns, w.command, ...w.args] };
  const out = openSync(outFile, 'a');
  try {
    return spawn(command, argv, { stdio: ['ignore', out, out], env: process.env, ...(opts.detached === true ? { detached: true } : {}) });
  } finally {
    closeSync(out);
  }
}

/** True while the child has not exited. */
export function isChildRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** SIGCONT + SIGTERM (a stopped process acts on it), SIGKILL after `graceMs`; resolves once it has exited. */
export function stopChild(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!isChildRunning(child) || child.pid === undefined) return Promise.resolve();
  const pid = child.pid;
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => signalPid(pid, 'SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    signalPid(pid, 'SIGCONT');
    signalPid(pid, 'SIGTERM');
  });
}

/**
 * `stopChild` for a process that is not our child (one adopted from an earlier run): SIGCONT +
 * SIGTERM, SIGKILL after `graceMs`; its exit is seen in /proc (a zombie counts as gone). Resolves
 * once it has exited, or 10 s after the SIGKILL at the latest.
 */
export async function stopPid(pid: number, graceMs: number): Promise<void> {
  signalPid(pid, 'SIGCONT');
  signalPid(pid, 'SIGTERM');
  if (await waitForExit(pid, graceMs)) return;
  signalPid(pid, 'SIGKILL');
  await waitForExit(pid, 10_000);
}
