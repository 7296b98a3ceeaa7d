import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJson, list, nullable, num, obj, optional, port, str, type Decoder } from '../core/decode.js';
import { WardenError } from '../core/errors.js';
import { EtcdClient } from '../dcs/etcd-client.js';
import { LABEL_MAP } from './records.js';

/** One member as recorded for other tools (names are part of the public contract). */
export interface StateMember {
  readonly name: string;
  readonly apiUrl: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly agentPid: number | null;
  /** `--nodes`: the node it runs on and its directory there. */
  readonly node?: string;
  readonly dir?: string;
}

/** `--nodes`: one node daemon. */
export interface StateNode {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly pid: number | null;
  readonly dir: string;
  /** Its address (`--netns`: the node's own in its namespace; else 127.0.0.1). */
  readonly address?: string;
}

/** The local runtime's router as recorded for other tools: `rw` and `ro` are where clients connect. */
export interface StateRouter {
  readonly rw: { readonly host: string; readonly port: number };
  readonly ro: { readonly host: string; readonly port: number };
  /** The admin HTTP API (GET /status, /metrics, /health). */
  readonly admin?: { readonly host: string; readonly port: number };
  /** The router process, when it runs. */
  readonly pid?: number | null;
}

/** `--nodes`: a router, with the node it runs on and its directory. */
export interface StateRouterAt extends StateRouter {
  readonly node: string;
  readonly dir: string;
}

/** DIR/state.json: what `warden up` started and where it is (docs/architecture.md, 'The local runtime'). */
export interface StateFile {
  readonly cluster: string;
  readonly etcd: readonly string[];
  readonly superuser: string;
  readonly pgpassFile: string;
  readonly members: readonly StateMember[];
  /** The first router (`--nodes`: the first of `routers`). */
  readonly router: null | StateRouter;
  /** `--nodes`: every router of the cluster. */
  readonly routers?: readonly StateRouterAt[];
  /** `--nodes`: the node daemons. */
  readonly nodes?: readonly StateNode[];
  /** PID of the supervisor that owns every process above. */
  readonly supervisorPid: number | null;
  readonly etcdPids?: readonly (number | null)[];
  /** etcd authentication: tools connect as `username` with the password in `passwordFile` (0600). */
  readonly etcdAuth?: { readonly username: string; readonly passwordFile: string };
}

/** Path of the state file in a runtime dir. */
export function statePath(dir: string): string {
  return join(dir, 'state.json');
}

/** Reads DIR/state.json; undefined when there is none. */
export async function readStateFile(dir: string): Promise<StateFile | undefined> {
  let text: string;
  try {
    text = await readFile(statePath(dir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WardenError('internal', `cannot read ${statePath(dir)}`, { cause: e });
  }
  const decoded = decodeJson(STATE_FILE, text);
  if (!decoded.ok) throw new WardenError('config-invalid', `${statePath(dir)}: ${decoded.error}`);
  return decoded.value;
}

const pid = nullable(num({ min: 1, integer: true }));
const hostPort = obj({ host: str, port });
const STATE_FILE: Decoder<StateFile> = obj({
  cluster: str,
  etcd: list(str),
  superuser: str,
  pgpassFile: str,
  members: list(obj({ name: str, apiUrl: str, host: str, port, dataDir: str, agentPid: pid, node: optional(str), dir: optional(str) })),
  router: nullable(obj({ rw: hostPort, ro: hostPort, admin: optional(hostPort), pid: optional(pid), node: optional(str), dir: optional(str) })),
  routers: optional(list(obj({ rw: hostPort, ro: hostPort, admin: optional(hostPort), pid: optional(pid), node: str, dir: str }))),
  nodes: optional(list(obj({ name: str, labels: LABEL_MAP, pid, dir: str, address: optional(str) }))),
  supervisorPid: pid,
  etcdPids: optional(list(pid)),
  etcdAuth: optional(obj({ username: str, passwordFile: str })),
});

/**
 * An etcd client for the cluster a state file describes, with its credentials (read now from the
 * password file): what the CLI, the tests and the benchmarks use to reach a local runtime's etcd.
 */
export function etcdClientFromState(state: Pick<StateFile, 'etcd' | 'etcdAuth'>, defaultTimeoutMs: number): EtcdClient {
  const auth = state.etcdAuth;
  return new EtcdClient({
    endpoints: state.etcd,
    defaultTimeoutMs,
    ...(auth === undefined ? {} : { auth: { username: auth.username, password: readFileSync(auth.passwordFile, 'utf8').trim() } }),
  });
}

const writeQueues = new Map<string, Promise<void>>();

/**
 * Writes `text` to `path` atomically (a temp file of its own, then rename), so readers never see
 * half a file; writes to one path from this process land in the order they were called, so an
 * older content can never overwrite a newer one.
 */
export function writeFileAtomically(path: string, text: string, mode: number): Promise<void> {
  const previous = writeQueues.get(path) ?? Promise.resolve();
  const next = previous.then(async () => {
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      await writeFile(tmp, text, { mode });
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  });
  const settled = next.catch(() => undefined);
  writeQueues.set(path, settled);
  void settled.then(() => {
    if (writeQueues.get(path) === settled) writeQueues.delete(path);
  });
  return next;
}

/** Writes DIR/state.json atomically and in call order (see writeFileAtomically). */
export async function writeStateFile(dir: string, state: StateFile): Promise<void> {
  await writeFileAtomically(statePath(dir), `${JSON.stringify(state, null, 2)}\n`, 0o644);
}
