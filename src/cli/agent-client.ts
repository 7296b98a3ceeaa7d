import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { WardenError } from '../core/errors.js';
import { httpCall, type ClientTls } from '../core/http-app.js';
import type { Target } from './target.js';

/** The CLI's TLS settings for agents with HTTPS REST APIs: the files named by these variables. */
export const CTL_TLS_ENV = { ca: 'WARDEN_CTL_CAFILE', cert: 'WARDEN_CTL_CERTFILE', key: 'WARDEN_CTL_KEYFILE' } as const;

/**
 * The CA to trust and the client certificate to present when calling agents over HTTPS, read from
 * the files WARDEN_CTL_CAFILE / _CERTFILE / _KEYFILE name; undefined when none is set.
 */
export function ctlTls(env: NodeJS.ProcessEnv = process.env): ClientTls | undefined {
  const read = (k: keyof typeof CTL_TLS_ENV): string | undefined => {
    const file = env[CTL_TLS_ENV[k]];
    if (file === undefined || file === '') return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new WardenError('config-invalid', `${CTL_TLS_ENV[k]}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const ca = read('ca');
  const cert = read('cert');
  const key = read('key');
  if ((cert === undefined) !== (key === undefined)) throw new WardenError('config-invalid', `set both ${CTL_TLS_ENV.cert} and ${CTL_TLS_ENV.key}, or neither`);
  if (ca === undefined && cert === undefined) return undefined;
  return { ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }) };
}

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
  if (!t.local) return undefined;
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
  const tls = ctlTls();
  try {
    const res = await httpCall(new URL(path, apiUrl), {
      method,
      headers,
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
      timeoutMs: opts.timeoutMs ?? 10_000,
      ...(tls === undefined ? {} : { tls }),
    });
    return { status: res.status, text: res.body };
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
