import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WardenError } from '../core/errors.js';
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
  try {
    return JSON.parse(await readFile(layoutPath(dir), 'utf8')) as RuntimeLayout;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WardenError('config-invalid', `cannot read ${layoutPath(dir)}`, { cause: e });
  }
}

/** Writes DIR/runtime.json. */
export async function writeLayout(dir: string, layout: RuntimeLayout): Promise<void> {
  await writeFile(layoutPath(dir), `${JSON.stringify(layout, null, 2)}\n`, { mode: 0o600 });
}

/** Path of the supervisor's PID file. */
export function supervisorPidPath(dir: string): string {
  return join(dir, 'supervisor.pid');
}
