import { stringify } from 'yaml';
import type { DynamicConfig } from '../ha/dynamic-config.js';
import { parseClusterSpec } from './cluster-spec.js';

const PREFIX = 'spec.patroni.dynamicConfiguration.';

/**
 * Validates a whole dynamic configuration object (the `config` key after an edit) with the same
 * rules, messages and did-you-mean as the cluster spec, so that `edit-config`, PATCH /config and a
 * cluster.yaml reject the same mistakes the same way. Errors name the field (`loop_wait: …`).
 */
export function validateDynamicConfig(candidate: unknown): { ok: true; config: DynamicConfig } | { ok: false; errors: string[] } {
  if (typeof candidate !== 'object' || candidate === null || Array.isArray(candidate)) {
    return { ok: false, errors: ['the configuration must be a JSON object'] };
  }
  const manifest = {
    apiVersion: 'warden.dev/v1',
    kind: 'Cluster',
    metadata: { name: 'validate' },
    spec: { instances: [{ replicas: 1 }], patroni: { dynamicConfiguration: candidate } },
  };
  const parsed = parseClusterSpec(stringify(manifest), 'config');
  const field = (f: string): string => (f.startsWith(PREFIX) ? f.slice(PREFIX.length) : f);
  if (!parsed.ok) {
    return { ok: false, errors: parsed.errors.map((e) => `${field(e.field)}: ${e.message}`) };
  }
  // In a spec a managed parameter (port, listen_addresses, …) is dropped with a notice, as Patroni
  // does; an explicit edit of one is refused instead of answering "no change".
  const managed = parsed.notices.filter((n) => n.field.startsWith(`${PREFIX}postgresql.parameters.`));
  if (managed.length > 0) return { ok: false, errors: managed.map((n) => `${field(n.field)}: ${n.message.replace('this value is ignored', 'it cannot be set cluster-wide')}`) };
  return { ok: true, config: parsed.spec.dynamicConfig };
}
