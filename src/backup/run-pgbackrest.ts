import { spawn } from 'node:child_process';
import { WardenError } from '../core/errors.js';
import { pgBackRestFailure } from './pgbackrest-errors.js';

/** The OS user pgBackRest runs as: PostgreSQL's run user when Warden runs as root (the repository and data dirs are its). */
export interface RunIdentity {
  readonly uid: number;
  readonly gid: number;
}

/** What one pgbackrest run printed. */
export interface PgBackRestOutput {
  readonly stdout: string;
  readonly stderr: string;
  readonly elapsedMs: number;
}

/** Grace between SIGTERM (pgBackRest then releases its locks and stops its workers) and SIGKILL. */
const KILL_GRACE_MS = 5_000;
/** Enough for the info JSON of thousands of sets; what is beyond is cut from the front. */
const MAX_OUTPUT_CHARS = 32 * 1024 * 1024;

/**
 * Runs `pgbackrest args…` in its own process group, as `identity` when given (setpriv, like
 * PostgreSQL's own commands), with a clean environment. Resolves with its output on exit 0; rejects
 * with the translated pgBackRest error otherwise, and when `timeoutMs` passes or `signal` aborts
 * (the process group gets SIGTERM, then SIGKILL).
 */
export function runPgBackRest(
  args: readonly string[],
  opts: { readonly what: string; readonly timeoutMs: number; readonly signal?: AbortSignal; readonly identity?: RunIdentity; readonly binary?: string },
): Promise<PgBackRestOutput> {
  const bin = opts.binary ?? 'pgbackrest';
  const [cmd, argv] =
    opts.identity === undefined ? [bin, [...args]] : ['setpriv', [`--reuid=${opts.identity.uid}`, `--regid=${opts.identity.gid}`, '--init-groups', '--', bin, ...args]];
  return new Promise<PgBackRestOutput>((resolve, reject) => {
    if (opts.signal?.aborted === true) {
      reject(new WardenError('backup-command-failed', `pgbackrest ${opts.what}: cancelled before it started`));
      return;
    }
    const started = Date.now();
    // A clean environment: the caller's PG* and PGBACKREST_* variables must not change what runs.
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', HOME: '/tmp' };
    const proc = spawn(cmd, argv, { cwd: '/', env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (b: Buffer) => (stdout = (stdout + b.toString()).slice(-MAX_OUTPUT_CHARS)));
    proc.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-MAX_OUTPUT_CHARS)));
    let stoppedBecause: string | undefined;
    const timers: NodeJS.Timeout[] = [];
    let settled = false;
    const settle = (err: WardenError | undefined): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err === undefined) resolve({ stdout, stderr, elapsedMs: Date.now() - started });
      else reject(err);
    };
    const stop = (because: string): void => {
      if (stoppedBecause !== undefined) return;
      stoppedBecause = because;
      killGroup(proc.pid, 'SIGTERM');
      timers.push(
        setTimeout(() => {
          killGroup(proc.pid, 'SIGKILL');
          // A grandchild may hold the pipes open: do not wait for them forever.
          timers.push(setTimeout(() => settle(stopped()), KILL_GRACE_MS));
        }, KILL_GRACE_MS),
      );
    };
    const stopped = (): WardenError =>
      new WardenError('backup-command-failed', `pgbackrest ${opts.what} ${stoppedBecause ?? 'stopped'}`, {
        retryable: true,
        details: { elapsedMs: Date.now() - started },
      });
    const onAbort = (): void => stop('was cancelled');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    timers.push(setTimeout(() => stop(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs));
    proc.on('error', (e) => settle(new WardenError('backup-command-failed', `could not run ${cmd}: ${e.message}`, { cause: e })));
    proc.on('close', (code, signal) => {
      if (stoppedBecause !== undefined) settle(stopped());
      else if (code === 0) settle(undefined);
      else settle(pgBackRestFailure(opts.what, { code, signal }, `${stderr}\n${stdout}`));
    });
  });
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch (e) {
    // ESRCH: the group is gone already, which is what we wanted.
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}
