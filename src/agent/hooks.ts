import { spawn } from 'node:child_process';
import { WardenError } from '../core/errors.js';
import type { Hooks } from './executor.js';
import type { Logger } from './logger.js';

const HOOK_TIMEOUT_MS = 30_000;

/** Runs `command` through /bin/sh with `args`, bounded in time; resolves with its exit code (killed: null). */
function runShell(command: string, args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', `${command} "$@"`, 'warden-hook', ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const collect = (d: Buffer): void => {
      output = (output + d.toString()).slice(-2000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const t = setTimeout(() => {
      // The hook runs in its own process group: end it and whatever it started.
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(t);
      resolve({ code: 127, output: String(e) });
    });
    child.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, output });
    });
  });
}

/**
 * Patroni-style hooks from the agent config: pre_promote (a non-zero exit blocks the promotion) and
 * callbacks on_start / on_stop / on_role_change, called as `<command> <action> <role> <cluster>`.
 */
export function commandHooks(
  cfg: { prePromote?: string | undefined; callbacks: { onStart?: string; onStop?: string; onRoleChange?: string } },
  cluster: string,
  log: Logger,
): Hooks {
  const pre = cfg.prePromote;
  const byEvent = { on_start: cfg.callbacks.onStart, on_stop: cfg.callbacks.onStop, on_role_change: cfg.callbacks.onRoleChange };
  return {
    ...(pre === undefined
      ? {}
      : {
          prePromote: async () => {
            const r = await runShell(pre, ['pre_promote', 'replica', cluster], HOOK_TIMEOUT_MS);
            if (r.code !== 0) {
              throw new WardenError('conflict', `pre_promote hook exited with ${r.code === null ? 'a timeout' : `code ${r.code}`}: promotion blocked (${r.output.trim().slice(-300)})`);
            }
          },
        }),
    onEvent: (event, role) => {
      const cmd = byEvent[event];
      if (cmd === undefined) return;
      void runShell(cmd, [event, role, cluster], HOOK_TIMEOUT_MS).then((r) => {
        if (r.code !== 0) log.warn({ event, code: r.code, output: r.output.slice(-300) }, 'callback failed');
      });
    },
  };
}

/**
 * `hooks` with `step` run first in every promotion, before the operator's pre_promote. `step` must
 * not throw for problems that should not block a failover: it reports them itself.
 */
export function withPrePromoteStep(hooks: Hooks, step: () => Promise<void>): Hooks {
  const operator = hooks.prePromote;
  return {
    ...hooks,
    prePromote: async () => {
      await step();
      if (operator !== undefined) await operator();
    },
  };
}
