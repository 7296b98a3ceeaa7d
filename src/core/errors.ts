/** Error kinds the core understands; adapters translate library errors into these at the edge. */
export type WardenErrorCode =
  | 'dcs-unavailable'
  | 'dcs-auth-failed'
  | 'dcs-timeout'
  | 'dcs-bad-response'
  | 'lease-not-found'
  | 'postgres-unavailable'
  | 'postgres-command-failed'
  | 'backup-command-failed'
  | 'config-invalid'
  | 'data-dir-foreign'
  | 'port-in-use'
  | 'not-found'
  | 'conflict'
  /** An operation was cancelled through its AbortSignal (the loop chose to, or the agent stops). */
  | 'operation-cancelled'
  | 'internal';

/** An error that carries a stable code, whether retrying can help, and the underlying cause. */
export class WardenError extends Error {
  readonly code: WardenErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: WardenErrorCode,
    message: string,
    opts: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'WardenError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.details = opts.details ?? {};
  }
}

/** True when `e` is a WardenError with the given code. */
export function isWardenError(e: unknown, code?: WardenErrorCode): e is WardenError {
  return e instanceof WardenError && (code === undefined || e.code === code);
}

/** A readable one-line message for any thrown value, including its cause chain. */
export function describeError(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause === undefined ? e.message : `${e.message}: ${describeError(cause)}`;
  }
  return String(e);
}

/** Exhaustiveness guard for tagged-union switches. */
export function assertNever(x: never): never {
  throw new WardenError('internal', `unexpected value: ${JSON.stringify(x)}`);
}
