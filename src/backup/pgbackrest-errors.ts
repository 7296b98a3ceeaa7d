// pgBackRest's failures in Warden's error vocabulary (docs/architecture.md, "Code shapes" 6). Pure.
import { WardenError, type WardenErrorCode } from '../core/errors.js';

/** The first `ERROR: [NNN]: message` pgBackRest printed (its message may go on over several lines), if any. */
export function pgBackRestErrorOf(output: string): { code: number; message: string } | undefined {
  const lines = output.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /ERROR: \[(\d{3})\]: (.*)$/.exec(lines[i] ?? '');
    if (m === null || m[1] === undefined || m[2] === undefined) continue;
    // Continuation lines (pgBackRest indents them) belong to the same message.
    const parts = [m[2]];
    for (let j = i + 1; j < lines.length && /^\s+\S/.test(lines[j] ?? ''); j++) parts.push((lines[j] ?? '').trim());
    return { code: Number(m[1]), message: parts.join(' ').trim() };
  }
  return undefined;
}

/** pgBackRest error codes (src/build/error/error.yaml in pgBackRest) that mean something to Warden. */
const CODES: Readonly<Record<number, { code: WardenErrorCode; retryable: boolean }>> = {
  // lock-acquire: another backup, expire or stanza command holds the repository's lock.
  50: { code: 'conflict', retryable: true },
  // archive-mismatch, backup-mismatch, db-mismatch: the repository belongs to another system identifier or version.
  44: { code: 'conflict', retryable: false },
  51: { code: 'conflict', retryable: false },
  58: { code: 'conflict', retryable: false },
  // file-missing (e.g. no stanza yet), backup-set-invalid (no set fits the target), path-missing.
  55: { code: 'not-found', retryable: false },
  73: { code: 'not-found', retryable: false },
  75: { code: 'not-found', retryable: false },
  // db-connect: the server did not answer.
  56: { code: 'postgres-unavailable', retryable: true },
  // archive-timeout: the WAL segment did not reach the repository in time.
  82: { code: 'backup-command-failed', retryable: true },
  // option-invalid, option-invalid-value, option-required, config.
  27: { code: 'config-invalid', retryable: false },
  31: { code: 'config-invalid', retryable: false },
  32: { code: 'config-invalid', retryable: false },
  37: { code: 'config-invalid', retryable: false },
};

/**
 * The WardenError for a pgbackrest run that failed: the pgBackRest error's code decides ours, its
 * message is kept (the operator reads it), the exit code and command go in the details.
 */
export function pgBackRestFailure(what: string, exit: { code: number | null; signal: string | null }, output: string): WardenError {
  const found = pgBackRestErrorOf(output);
  const how = exit.code === null ? `was killed by ${exit.signal ?? 'a signal'}` : `exited with code ${exit.code}`;
  if (found === undefined) {
    const tail = output.trim().split('\n').slice(-5).join(' ').slice(-1000);
    return new WardenError('backup-command-failed', `pgbackrest ${what} ${how}${tail === '' ? '' : `: ${tail}`}`, { details: { exitCode: exit.code } });
  }
  // pgBackRest 2.45 reports a repository of another system identifier as file-invalid (28), a
  // code it also uses for damaged files: the message tells them apart (clone isolation, invariant 9).
  const otherSystem = /do not match the database/.test(found.message);
  const mapped = otherSystem ? { code: 'conflict' as const, retryable: false } : (CODES[found.code] ?? { code: 'backup-command-failed' as const, retryable: false });
  return new WardenError(mapped.code, `pgbackrest ${what}: ${found.message} [pgBackRest error ${found.code}]`, {
    retryable: mapped.retryable,
    details: { exitCode: exit.code, pgBackRestCode: found.code },
  });
}
