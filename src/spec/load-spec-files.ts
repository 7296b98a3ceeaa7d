import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseAgentConfig, withRunAsUserDefault } from './agent-config.js';
import type { ParseAgentConfigResult } from './agent-config.js';
import { parseClusterSpec } from './cluster-spec.js';
import type { ParseClusterSpecResult } from './cluster-spec.js';
import { parseNodeConfig } from './node-config.js';
import type { ParseNodeConfigResult } from './node-config.js';
import { parseNodesFile } from './nodes-file.js';
import type { ParseNodesFileResult } from './nodes-file.js';
import type { SpecError } from './spec-error.js';
import { parseRouterConfig } from './router-config.js';
import type { ParseRouterConfigResult } from './router-config.js';

// The only module of src/spec that touches the file system (docs/architecture.md, 'Source layout'): everything else is pure.

/** Reads and validates a cluster spec file; a missing or unreadable file is one error naming it. */
export async function loadClusterSpec(path: string): Promise<ParseClusterSpecResult> {
  const text = await readSpecFile(path, 'cluster spec');
  return typeof text === 'string' ? parseClusterSpec(text, path) : { ok: false, errors: [text] };
}

/** Reads and validates a nodes file (the hosts `warden plan` places on offline). */
export async function loadNodesFile(path: string): Promise<ParseNodesFileResult> {
  const text = await readSpecFile(path, 'nodes');
  return typeof text === 'string' ? parseNodesFile(text, path) : { ok: false, errors: [text] };
}

/**
 * Reads and validates an agent config file with `env` overriding it, reads the password files it
 * names, and defaults run_as_user to `postgres` when the agent runs as root.
 */
export async function loadAgentConfig(path: string, env: Readonly<Record<string, string | undefined>>): Promise<ParseAgentConfigResult> {
  const text = await readSpecFile(path, 'agent config');
  if (typeof text !== 'string') return { ok: false, errors: [text] };
  const result = parseAgentConfig(text, path, env, { readPasswordFile: (p) => readFileSync(p, 'utf8') });
  if (!result.ok) return result;
  return { ...result, config: withRunAsUserDefault(result.config, process.getuid?.() === 0) };
}

/** Reads and validates a router config file with WARDEN_ROUTER_* variables in `env` overriding it. */
export async function loadRouterConfig(path: string, env: Readonly<Record<string, string | undefined>>): Promise<ParseRouterConfigResult> {
  const text = await readSpecFile(path, 'router config');
  return typeof text === 'string' ? parseRouterConfig(text, path, env) : { ok: false, errors: [text] };
}

/** Reads and validates a node daemon's config file (`warden node --config`). */
export async function loadNodeConfig(path: string): Promise<ParseNodeConfigResult> {
  const text = await readSpecFile(path, 'node config');
  return typeof text === 'string' ? parseNodeConfig(text, path) : { ok: false, errors: [text] };
}

async function readSpecFile(path: string, what: string): Promise<string | SpecError> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const message =
      code === 'ENOENT'
        ? `${what} file not found`
        : code === 'EISDIR'
          ? `is a directory, not a ${what} file`
          : `cannot read ${what} file: ${e instanceof Error ? e.message : String(e)}`;
    return { file: path, line: 0, col: 0, field: '', message };
  }
}
