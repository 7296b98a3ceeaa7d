import { cp, mkdir, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { it } from 'node:test';

// Keeping the logs of a failed integration test: its temp dir is removed in the after hook, so a
// failure that happens once in eight runs would otherwise leave nothing to read. On failure the
// tail of every log under the dir is printed and the logs are copied to a dir that is kept.

const LOG_FILE = /\.(log|out)$/;
/** Dirs a log search never enters: PostgreSQL data (its own log is under data/log, kept) is large. */
const SKIPPED_DIRS = new Set(['base', 'global', 'pg_wal', 'pg_xact', 'pg_multixact', 'pg_subtrans', 'pg_commit_ts', 'pg_stat', 'pg_stat_tmp', 'secrets']);

/** Every *.log and *.out file under `dir` (PostgreSQL's own log files included), bounded in depth. */
export async function logFilesUnder(dir: string, depth = 8): Promise<string[]> {
  if (depth < 0) return [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIPPED_DIRS.has(e.name)) found.push(...(await logFilesUnder(path, depth - 1)));
    } else if (e.isFile() && LOG_FILE.test(e.name)) {
      found.push(path);
    }
  }
  return found.sort();
}

/**
 * Prints the last `lines` lines of every log under `dir` to stderr and copies the logs to a new
 * dir under the system temp dir, which is kept; returns that dir.
 */
export async function keepLogs(dir: string, why: string, lines = 40): Promise<string> {
  const kept = join(tmpdir(), `warden-kept-logs-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  await mkdir(kept, { recursive: true });
  const files = await logFilesUnder(dir);
  const parts: string[] = [`\n=== ${why}: ${files.length} log file(s) of ${dir} kept in ${kept} ===`];
  for (const f of files) {
    const rel = relative(dir, f);
    await cp(f, join(kept, rel)).catch((e: unknown) => parts.push(`(could not copy ${rel}: ${String(e)})`));
    const text = await readFile(f, 'utf8').catch(() => '');
    const tail = text.split('\n').slice(-lines - 1).join('\n');
    parts.push(`--- ${rel} (last ${lines} lines) ---\n${tail}`);
  }
  process.stderr.write(`${parts.join('\n')}\n=== end of kept logs (${kept}) ===\n`);
  return kept;
}

/**
 * `it`, but a failing case prints the tail of every log under `dir()` and keeps a copy before it
 * reports the failure (the suite's after hook removes the dir).
 */
export function itKeepingLogs(dir: () => string): (name: string, fn: () => Promise<void>) => void {
  return (name, fn) => {
    void it(name, async () => {
      try {
        await fn();
      } catch (e) {
        await keepLogs(dir(), `failed: ${name}`).catch((k: unknown) => process.stderr.write(`keeping the logs failed: ${String(k)}\n`));
        throw e;
      }
    });
  };
}
