import { WardenError } from './errors.js';

/** Polls `fn` until it returns a non-undefined value or `timeoutMs` passes; every wait is bounded. */
export async function eventually<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  opts: { timeoutMs: number; intervalMs?: number; what?: string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      throw new WardenError('internal', `timed out after ${opts.timeoutMs} ms waiting for ${opts.what ?? 'condition'}`, {
        cause: lastError,
      });
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/**
 * Checks `check` every `intervalMs` for `durationMs` (a bounded watch that something keeps
 * holding: "no failover for 12 s"); rejects with the first failing check.
 */
export async function holdsFor(check: () => Promise<void> | void, opts: { durationMs: number; intervalMs: number }): Promise<number> {
  const until = Date.now() + opts.durationMs;
  let checks = 0;
  while (Date.now() < until) {
    await check();
    checks++;
    await sleep(Math.min(opts.intervalMs, Math.max(0, until - Date.now())));
  }
  return checks;
}

/** Resolves after `ms`, or early (rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(asError(signal.reason));
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(asError(signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** An abort reason as an Error (AbortSignal reasons are usually DOMExceptions already). */
function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

/** Resolves with `promise`, or rejects with "<what> did not happen within N ms" when it takes longer. */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WardenError('internal', `${what} did not happen within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
