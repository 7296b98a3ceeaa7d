import { didYouMean } from './did-you-mean.js';
import { PG15_SETTINGS, type PgSettingRow } from './pg-settings-15.js';

/**
 * Checks PostgreSQL parameter values the way PostgreSQL 15 itself parses them (guc.c: parse_bool,
 * parse_int, parse_real with units, enum lookup), against the server's own catalogue of settings
 * (pg_settings, generated into pg-settings-15.ts). A value PostgreSQL would refuse at its next start
 * is refused before it is written into any member's configuration, with PostgreSQL's wording.
 */

interface Setting {
  readonly name: string;
  readonly vartype: PgSettingRow[1];
  readonly context: string;
  readonly unit: string | null;
  readonly min: number | undefined;
  readonly max: number | undefined;
  readonly enumvals: readonly string[] | undefined;
}

const SETTINGS: ReadonlyMap<string, Setting> = new Map(
  PG15_SETTINGS.map(([name, vartype, context, unit, min, max, enumvals]) => [
    name.toLowerCase(),
    { name, vartype, context, unit, min: min === null ? undefined : Number(min), max: max === null ? undefined : Number(max), enumvals: enumvals ?? undefined },
  ]),
);

/** Memory units in bytes and time units in microseconds (guc.c's memory_unit_conversion_table and time_unit_conversion_table). */
const MEMORY_UNITS: Readonly<Record<string, number>> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME_UNITS: Readonly<Record<string, number>> = { us: 1, ms: 1000, s: 1_000_000, min: 60_000_000, h: 3_600_000_000, d: 86_400_000_000 };
/** The base unit of a setting (pg_settings.unit) in bytes or microseconds. */
const BASE_UNITS: Readonly<Record<string, { kind: 'memory' | 'time'; size: number }>> = {
  B: { kind: 'memory', size: 1 },
  kB: { kind: 'memory', size: 1024 },
  '8kB': { kind: 'memory', size: 8192 },
  MB: { kind: 'memory', size: 1024 ** 2 },
  us: { kind: 'time', size: 1 },
  ms: { kind: 'time', size: 1000 },
  s: { kind: 'time', size: 1_000_000 },
  min: { kind: 'time', size: 60_000_000 },
};

const INT32_MAX = 2 ** 31 - 1;
const INT32_MIN = -(2 ** 31);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/** True when `name` is a setting PostgreSQL 15 knows (case-insensitive). */
export function isKnownParameter(name: string): boolean {
  return SETTINGS.has(name.toLowerCase());
}

/**
 * Why PostgreSQL would refuse `name = value`, or undefined when it would accept it. Names with a
 * dot are extension settings (`pg_stat_statements.max`): their extension checks them, so only the
 * text is checked here.
 */
export function parameterProblem(name: string, value: string | number | boolean): string | undefined {
  const text = typeof value === 'string' ? value : String(value);
  if (CONTROL.test(text)) return `invalid value for parameter "${name}": control characters (such as a newline) are not allowed`;
  const s = SETTINGS.get(name.toLowerCase());
  if (s === undefined) {
    if (name.includes('.')) return undefined;
    const guess = didYouMean(name.toLowerCase(), [...SETTINGS.keys()]);
    return `unrecognized configuration parameter "${name}"${guess === undefined ? '' : `; did you mean "${guess}"?`}`;
  }
  if (s.context === 'internal') return `parameter "${s.name}" cannot be changed (it is fixed when PostgreSQL is built or initialized)`;
  switch (s.vartype) {
    case 'bool':
      return typeof value === 'boolean' || parseBool(text) !== undefined ? undefined : `parameter "${s.name}" requires a Boolean value (on, off, true, false, yes, no, 1, 0), got ${JSON.stringify(text)}`;
    case 'integer':
    case 'real':
      return numericProblem(s, text);
    case 'enum':
      return enumProblem(s, typeof value === 'boolean' ? (value ? 'on' : 'off') : text);
    case 'string':
      return undefined;
  }
}

/** guc.c parse_bool: case-insensitive, unique prefixes of true/false/yes/no, on/off (at least "of"), 1/0. */
function parseBool(text: string): boolean | undefined {
  const t = text.toLowerCase();
  if (t.length === 0) return undefined;
  if ('true'.startsWith(t) || 'yes'.startsWith(t) || t === 'on' || t === '1') return true;
  if ('false'.startsWith(t) || 'no'.startsWith(t) || (t.length >= 2 && 'off'.startsWith(t)) || t === '0') return false;
  return undefined;
}

function numericProblem(s: Setting, text: string): string | undefined {
  const m = /^\s*([+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))\s*([A-Za-z]*)\s*$/.exec(text);
  const invalid = `invalid value for parameter "${s.name}": ${JSON.stringify(text)}`;
  if (m === null || m[1] === undefined) return invalid;
  let n = /^[+-]?0[xX]/.test(m[1]) ? Number.parseInt(m[1], 16) : Number(m[1]);
  if (!Number.isFinite(n)) return invalid;
  const unit = m[2] ?? '';
  if (unit !== '') {
    const base = s.unit === null ? undefined : BASE_UNITS[s.unit];
    if (base === undefined) return `${invalid} (this parameter takes no unit)`;
    const table = base.kind === 'memory' ? MEMORY_UNITS : TIME_UNITS;
    const size = Object.hasOwn(table, unit) ? table[unit] : undefined;
    if (size === undefined) {
      return `${invalid}; valid units for this parameter are ${base.kind === 'memory' ? '"B", "kB", "MB", "GB", and "TB"' : '"us", "ms", "s", "min", "h", and "d"'}`;
    }
    n = (n * size) / base.size;
  }
  if (s.vartype === 'integer') {
    n = Math.round(n);
    if (n > INT32_MAX || n < INT32_MIN) return `${invalid}: value exceeds integer range`;
  }
  if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
    return `${formatNumber(n)}${s.unit === null || unit === '' ? '' : ` ${s.unit}`} is outside the valid range for parameter "${s.name}" (${formatNumber(s.min)} .. ${formatNumber(s.max)}${s.unit === null ? '' : ` ${s.unit}`})`;
  }
  return undefined;
}

function formatNumber(n: number | undefined): string {
  return n === undefined ? '?' : String(n);
}

function enumProblem(s: Setting, text: string): string | undefined {
  const values = s.enumvals ?? [];
  const t = text.toLowerCase();
  if (values.some((v) => v.toLowerCase() === t)) return undefined;
  // Enums that offer on/off also accept the other Boolean spellings (hidden entries in guc.c).
  if (values.includes('on') && values.includes('off') && ['true', 'false', 'yes', 'no', '1', '0'].includes(t)) return undefined;
  if (s.name === 'wal_level' && (t === 'archive' || t === 'hot_standby')) return undefined;
  return `invalid value for parameter "${s.name}": ${JSON.stringify(text)}; available values: ${values.join(', ')}`;
}
