import { WardenError } from '../core/errors.js';
import type { OperationProgress } from './postgres.js';

/**
 * pg_basebackup --progress ("123456/1048576 kB (11%), 0/1 tablespace") and pg_rewind --progress
 * ("123456/1048576 kB (11%) copied") print one report per second; on a pipe each ends with a
 * newline (on a terminal, a carriage return). Returns the last report in `text`, or undefined.
 */
export function parseCopyProgress(text: string): OperationProgress | undefined {
  let last: OperationProgress | undefined;
  for (const m of text.matchAll(/(\d+)\/(\d+) kB \(\d+%\)/g)) {
    const done = Number(m[1]) * 1024;
    const total = Number(m[2]) * 1024;
    if (Number.isSafeInteger(done) && Number.isSafeInteger(total)) last = total > 0 ? { doneBytes: done, totalBytes: total } : { doneBytes: done };
  }
  return last;
}

/** The error of an operation its AbortSignal cancelled; `why` is the signal's reason when it has one. */
export function cancelledError(what: string, signal: AbortSignal): WardenError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? r.message : typeof r === 'string' ? r : 'cancelled';
  return new WardenError('operation-cancelled', `${what} cancelled: ${why}`);
}
