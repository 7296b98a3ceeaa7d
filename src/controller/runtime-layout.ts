import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJson, list, num, obj, optional, port, str, type Decoder } from '../core/decode.js';
import { WardenError } from '../core/errors.js';
import { writeFileAtomically } from './state-file.js';
import type { EtcdClusterSpec } from '../dcs/etcd-server.js';

/** One member of a local runtime: its ports and files, fixed at the first `up` and reused after. */
export interface RuntimeMember {
  readonly name: string;
  readonly host: string;
  readonly pgPort: number;
  readonly apiPort: number;
  /** DIR/members/<name>: owned by the PostgreSQL run user. */
  readonly memberDir: string;
  readonly dataDir: string;
  readonly configFile: string;
  readonly logFile: string;
}

/** The local runtime's router: its ports, fixed at the first `up` and reused after. */
export interface RuntimeRouter {
  readonly host: string;
  readonly rwPort: number;
  readonly roPort: number;
  readonly adminPort: number;
  /** DIR/router: router.yaml and router.log. */
  readonly dir: string;
  readonly configFile: string;
  readonly logFile: string;
}

/** DIR/runtime.json: everything the supervisor needs to (re)start the same cluster. */
export interface RuntimeLayout {
  readonly cluster: string;
  readonly etcd: EtcdClusterSpec;
  readonly members: readonly RuntimeMember[];
  /** Absent in dirs made before routers existed; `up` adds it. */
  readonly router?: RuntimeRouter;
  readonly restartDelaySeconds: number;
  readonly superuser: string;
  readonly pgpassFile: string;
  readonly createdAt: string;
}

/** Path of the layout file in a runtime dir. */
export function layoutPath(dir: string): string {
  return join(dir, 'runtime.json');
}

/** Reads DIR/runtime.json; undefined when the dir was never set up. */
export async function readLayout(dir: string): Promise<RuntimeLayout | undefined> {
  let text: string;
  try {
    text = await readFile(layoutPath(dir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WardenError('config-invalid', `cannot read ${layoutPath(dir)}`, { cause: e });
  }
  const decoded = decodeJson(RUNTIME_LAYOUT, text);
  if (!decoded.ok) throw new WardenError('config-invalid', `${layoutPath(dir)}: ${decoded.error}`);
  return decoded.value;
}

const RUNTIME_LAYOUT: Decoder<RuntimeLayout> = obj({
  cluster: str,
  etcd: obj({
    token: str,
    members: list(obj({ name: str, clientUrl: str, peerUrl: str, dataDir: str, logFile: str })),
    heartbeatMs: optional(num({ min: 1 })),
    electionMs: optional(num({ min: 1 })),
  }),
  members: list(obj({ name: str, host: str, pgPort: port, apiPort: port, memberDir: str, dataDir: str, configFile: str, logFile: str })),
  router: optional(obj({ host: str, rwPort: port, roPort: port, adminPort: port, dir: str, configFile: str, logFile: str })),
  restartDelaySeconds: num({ min: 0 }),
  superuser: str,
  pgpassFile: str,
  createdAt: str,
});

/** Writes DIR/runtime.json atomically. */
export async function writeLayout(dir: string, layout: RuntimeLayout): Promise<void> {
  await writeFileAtomically(layoutPath(dir), `${JSON.stringify(layout, null, 2)}\n`, 0o600);
}

/** Path of the supervisor's PID file. */
export function supervisorPidPath(dir: string): string {
  return join(dir, 'supervisor.pid');
}
