import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WardenError } from '../core/errors.js';

/** One member as recorded for other tools (names are part of the public contract). */
export interface StateMember {
  readonly name: string;
  readonly apiUrl: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly agentPid: number | null;
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

/** DIR/state.json: what `warden up` started and where it is (DESIGN.md §5, "Warden core"). */
export interface StateFile {
  readonly cluster: string;
  readonly etcd: readonly string[];
  readonly superuser: string;
  readonly pgpassFile: string;
  readonly members: readonly StateMember[];
  readonly router: null | StateRouter;
  /** PID of the supervisor that owns every process above. */
  readonly supervisorPid: number | null;
  readonly etcdPids?: readonly (number | null)[];
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
  try {
    return JSON.parse(text) as StateFile;
  } catch (e) {
    throw new WardenError('config-invalid', `${statePath(dir)} is not valid JSON`, { cause: e });
  }
}

/** Writes DIR/state.json atomically (write then rename), so readers never see half a file. */
export async function writeStateFile(dir: string, state: StateFile): Promise<void> {
  const tmp = `${statePath(dir)}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, statePath(dir));
}
