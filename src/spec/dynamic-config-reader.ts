import { DEFAULT_DYNAMIC_CONFIG, DYNAMIC_CONFIG_BOUNDS, timingRuleViolation } from '../ha/dynamic-config.js';
import type { DynamicConfig, SettingBounds } from '../ha/dynamic-config.js';
import type { SpecSite } from './spec-error.js';
import type { MappingRules, SpecReader } from './spec-reader.js';
import { describeValue } from './spec-reader.js';
import { parameterProblem } from './pg-parameter-check.js';
import type { YamlValue } from './yaml-tree.js';

type ScalarKey = Exclude<keyof DynamicConfig, 'postgresql'>;
type ParameterValue = string | number | boolean;

const NOT_IMPLEMENTED = 'known Patroni setting, not implemented by Warden yet; ignored';

/** Patroni dynamic-configuration keys Warden accepts but does not act on (yet). */
const PATRONI_NOT_IMPLEMENTED: Readonly<Record<string, string>> = {
  standby_cluster: 'standby clusters are not implemented by Warden yet; ignored (the cluster bootstraps its own primary)',
  slots: `${NOT_IMPLEMENTED} (permanent replication slots)`,
  ignore_slots: NOT_IMPLEMENTED,
  master_start_timeout: `${NOT_IMPLEMENTED}; use primary_start_timeout`,
  master_stop_timeout: NOT_IMPLEMENTED,
  primary_stop_timeout: NOT_IMPLEMENTED,
  max_timelines_history: NOT_IMPLEMENTED,
  maximum_lag_on_syncnode: NOT_IMPLEMENTED,
  member_slots_ttl: NOT_IMPLEMENTED,
};

const PATRONI_POSTGRESQL_NOT_IMPLEMENTED: Readonly<Record<string, string>> = {
  use_slots: NOT_IMPLEMENTED,
  pg_hba: `${NOT_IMPLEMENTED} (pg_hba.conf is written by Warden)`,
  pg_ident: NOT_IMPLEMENTED,
  recovery_conf: NOT_IMPLEMENTED,
  remove_data_directory_on_rewind_failure: NOT_IMPLEMENTED,
  remove_data_directory_on_diverged_timelines: NOT_IMPLEMENTED,
};

/**
 * PostgreSQL parameters Warden sets itself from each member's own settings; a cluster-wide value
 * would break replication or routing, so they are dropped with a notice (Patroni does the same).
 */
const MANAGED_PARAMETERS = new Set([
  'listen_addresses',
  'port',
  'data_directory',
  'config_file',
  'hba_file',
  'ident_file',
  'unix_socket_directories',
  'cluster_name',
  'primary_conninfo',
  'primary_slot_name',
  'synchronous_standby_names',
  'hot_standby',
]);

const PARAMETER_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/;

interface Assigned<T> {
  readonly value: T;
  readonly site: SpecSite;
}

/**
 * Dynamic-config values gathered from one or more places in a file (Patroni keys, Crunchy's
 * `leaderLeaseDurationSeconds`, `spec.paused`), each remembered with where it was set so that
 * conflicts and the timing rule can point at the right line.
 */
export class DynamicConfigDraft {
  private readonly values = new Map<ScalarKey, Assigned<unknown>>();
  private readonly parameters = new Map<string, Assigned<ParameterValue>>();
  private useRewind: Assigned<boolean> | undefined;

  constructor(private readonly reader: SpecReader) {}

  /** Sets `key`; setting it again to a different value from another place is an error. */
  set<K extends ScalarKey>(key: K, value: DynamicConfig[K], site: SpecSite): void {
    const previous = this.values.get(key);
    if (previous !== undefined && previous.value !== value) {
      this.reader.error(site, `conflicts with ${previous.site.field} (${String(previous.value)} there, ${String(value)} here); set ${key} in one place`);
      return;
    }
    this.values.set(key, { value, site });
  }

  setParameter(name: string, value: ParameterValue, site: SpecSite): void {
    this.parameters.set(name, { value, site });
  }

  setUsePgRewind(value: boolean, site: SpecSite): void {
    this.useRewind = { value, site };
  }

  /** Where `key` was set, if it was. */
  siteOf(key: ScalarKey): SpecSite | undefined {
    return this.values.get(key)?.site;
  }

  /**
   * The defaults with every assignment applied, or undefined when the timing rule (invariant 2 of
   * docs/architecture.md) fails; that error is placed at ttl when it was set, else at `anchor`.
   */
  build(anchor: SpecSite): DynamicConfig | undefined {
    const merged: Record<string, unknown> = { ...DEFAULT_DYNAMIC_CONFIG };
    for (const [key, a] of this.values) merged[key] = a.value;
    const parameters: Record<string, ParameterValue> = { ...DEFAULT_DYNAMIC_CONFIG.postgresql.parameters };
    for (const [name, a] of this.parameters) parameters[name] = a.value;
    const config = {
      ...(merged as unknown as DynamicConfig),
      postgresql: { use_pg_rewind: this.useRewind?.value ?? DEFAULT_DYNAMIC_CONFIG.postgresql.use_pg_rewind, parameters },
    };
    const violation = timingRuleViolation(config);
    if (violation !== undefined) {
      const defaulted = (['ttl', 'loop_wait', 'retry_timeout'] as const).filter((k) => !this.values.has(k));
      const note = defaulted.length === 0 ? '' : ` (${defaulted.map((k) => `${k} is the default ${DEFAULT_DYNAMIC_CONFIG[k]}`).join(', ')})`;
      this.reader.error(this.siteOf('ttl') ?? anchor, `${violation}${note}`);
      return undefined;
    }
    return config;
  }
}

/**
 * Reads a Patroni-style dynamic configuration mapping (`spec.patroni.dynamicConfiguration`,
 * `bootstrap.dcs`) into `draft`. Unknown keys are errors with a suggestion: a misspelt `ttl` must
 * never be silently ignored.
 */
export function readDynamicConfiguration(reader: SpecReader, value: YamlValue, site: SpecSite, draft: DynamicConfigDraft): void {
  const bounded = (key: keyof typeof DYNAMIC_CONFIG_BOUNDS) => (v: YamlValue, s: SpecSite) => {
    const b: SettingBounds = DYNAMIC_CONFIG_BOUNDS[key];
    const n = reader.number(v, s, { ...(b.exclusiveMin === true ? { gt: b.min } : { min: b.min }), max: b.max, ...(b.integer === true ? { integer: true } : {}) });
    if (n !== undefined) draft.set(key, n, s);
  };
  const flag = (key: 'synchronous_mode_strict' | 'check_timeline' | 'failsafe_mode' | 'pause') => (v: YamlValue, s: SpecSite) => {
    const b = reader.boolean(v, s);
    if (b !== undefined) draft.set(key, b, s);
  };
  const rules: MappingRules = {
    read: {
      ttl: bounded('ttl'),
      loop_wait: bounded('loop_wait'),
      retry_timeout: bounded('retry_timeout'),
      maximum_lag_on_failover: bounded('maximum_lag_on_failover'),
      primary_start_timeout: bounded('primary_start_timeout'),
      replica_start_timeout: bounded('replica_start_timeout'),
      synchronous_mode: (v, s) => {
        const mode = readSynchronousMode(reader, v, s);
        if (mode !== undefined) draft.set('synchronous_mode', mode, s);
      },
      synchronous_mode_strict: flag('synchronous_mode_strict'),
      synchronous_node_count: bounded('synchronous_node_count'),
      check_timeline: flag('check_timeline'),
      failsafe_mode: flag('failsafe_mode'),
      pause: flag('pause'),
      postgresql: (v, s) => readPostgresqlSection(reader, v, s, draft),
    },
    ignored: PATRONI_NOT_IMPLEMENTED,
  };
  reader.mapping(value, site, rules);
}

function readSynchronousMode(reader: SpecReader, v: YamlValue, s: SpecSite): DynamicConfig['synchronous_mode'] | undefined {
  if (v.kind === 'scalar') {
    if (v.value === true || v.value === 'on') return 'on';
    if (v.value === false || v.value === 'off') return 'off';
    if (v.value === 'quorum') return 'quorum';
  }
  return reader.error(s, `must be false, true, off, on or quorum (got ${describeValue(v)})`);
}

function readPostgresqlSection(reader: SpecReader, value: YamlValue, site: SpecSite, draft: DynamicConfigDraft): void {
  reader.mapping(value, site, {
    read: {
      use_pg_rewind: (v, s) => {
        const b = reader.boolean(v, s);
        if (b !== undefined) draft.setUsePgRewind(b, s);
      },
      parameters: (v, s) => readParameters(reader, v, s, draft),
    },
    ignored: PATRONI_POSTGRESQL_NOT_IMPLEMENTED,
  });
}

function readParameters(reader: SpecReader, value: YamlValue, site: SpecSite, draft: DynamicConfigDraft): void {
  if (value.kind === 'scalar' && value.value === null) return;
  if (value.kind !== 'map') {
    reader.error(site, `must be a mapping of PostgreSQL parameter names to values (got ${describeValue(value)})`);
    return;
  }
  // Values are checked as PostgreSQL 15 would parse them: a value it refuses must never reach a
  // member's configuration, where it would only show at the next start (or bootstrap loop).
  for (const entry of value.entries) {
    const s: SpecSite = { ...site, line: entry.keyPos.line, col: entry.keyPos.col, field: `${site.field}.${entry.key}` };
    if (!PARAMETER_NAME.test(entry.key)) {
      reader.error(s, `${JSON.stringify(entry.key)} is not a PostgreSQL parameter name`);
      continue;
    }
    const v = entry.value;
    if (v.kind !== 'scalar' || v.value === null || (typeof v.value === 'number' && !Number.isFinite(v.value))) {
      reader.error(s, `must be a string, number or boolean (got ${describeValue(v)})`);
      continue;
    }
    const name = entry.key.toLowerCase();
    if (MANAGED_PARAMETERS.has(name)) {
      reader.notice(s, 'set by Warden for each member; this value is ignored');
      continue;
    }
    if (name === 'wal_level' && v.value === 'minimal') {
      reader.error(s, 'must be replica or logical: streaming replication does not work with wal_level minimal');
      continue;
    }
    const problem = parameterProblem(entry.key, v.value);
    if (problem !== undefined) {
      reader.error(s, problem);
      continue;
    }
    draft.setParameter(entry.key, v.value, s);
  }
}
