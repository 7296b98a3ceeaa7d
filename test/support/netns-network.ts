// The tests' hosts on one machine: the product's network namespaces (src/core/netns.ts, also what
// `warden up --netns` builds), plus the test-only check of what a cluster on them needs.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { netnsToolsUnavailable } from '../../src/core/netns.js';
import { PG_BIN_DIR } from './pg.js';

export { kill, NetnsNetwork, waitGone, type NetnsHost } from '../../src/core/netns.js';

/** Why namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  const tools = netnsToolsUnavailable();
  if (tools !== undefined) return tools === 'network namespaces need root' ? 'network namespaces need root (run the tests as root to include them)' : tools;
  if (spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status !== 0) return 'etcd is not installed';
  if (!existsSync(join(PG_BIN_DIR, 'postgres'))) return `PostgreSQL 15 is not installed in ${PG_BIN_DIR}`;
  const id = spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  if (id.status !== 0) return 'the postgres OS user is missing (install postgresql-15)';
  return undefined;
}
