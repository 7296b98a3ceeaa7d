import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { WardenError } from '../core/errors.js';
import type { Target } from './target.js';

/** Basic-auth credentials for agents' mutating endpoints. */
export interface RestAuth {
  readonly username: string;
  readonly password: string;
}

/** Credentials from WARDEN_RESTAPI_USERNAME/PASSWORD, else the ones `warden up` generated in DIR/secrets. */
export async function restAuthFor(t: Target): Promise<RestAuth | undefined> {
  const user = process.env.WARDEN_RESTAPI_USERNAME;
  const pass = process.env.WARDEN_RESTAPI_PASSWORD;
  if (user !== undefined && pass !== undefined) return { username: user, password: pass };
  if (t.state === undefined) return undefined;
  try {
    return { username: 'warden', password: (await readFile(join(t.dir, 'secrets', 'restapi.password'), 'utf8')).trim() };
  } catch {
    return undefined;
  }
}

/** One call to an agent's REST API; the status and body text, or a WardenError naming the agent. */
export async function callAgent(
  apiUrl: string,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  path: string,
  opts: { body?: unknown; auth?: RestAuth | undefined; timeoutMs?: number } = {},
): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.auth !== undefined) headers.authorization = `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}`;
  try {
    const res = await fetch(new URL(path, apiUrl), {
      method,
      headers,
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    return { status: res.status, text: await res.text() };
  } catch (e) {
    throw new WardenError('not-found', `the agent at ${apiUrl} did not answer ${method} ${path}`, { cause: e });
  }
}

/** Asks a yes/no question on a terminal; without one, refuses and says which flag skips the question. */
export async function confirm(question: string, flag = '--force'): Promise<boolean> {
  if (process.stdin.isTTY !== true) {
    throw new WardenError('config-invalid', `${question} — no terminal to confirm on: pass ${flag}`);
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const a = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(a.trim());
  } finally {
    rl.close();
  }
}

/** Asks the user to type `expected` (destructive commands); without a terminal, `given` must match it. */
export async function confirmByTyping(prompt: string, expected: string, given: string | undefined): Promise<boolean> {
  if (given !== undefined) return given === expected;
  if (process.stdin.isTTY !== true) throw new WardenError('config-invalid', `${prompt} — no terminal: pass --confirm ${expected}`);
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return (await rl.question(`${prompt}: `)).trim() === expected;
  } finally {
    rl.close();
  }
}
