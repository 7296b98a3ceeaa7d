import { isIP } from 'node:net';
import { posix } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Document } from 'yaml';
import type { DynamicConfig } from '../ha/dynamic-config.js';
import { formatHostPort, normalizeEtcdUrl, parseHostPort } from './addresses.js';
import type { HostPort } from './addresses.js';
import { dnsLabelProblem } from './dns-label.js';
import { DynamicConfigDraft, readDynamicConfiguration } from './dynamic-config-reader.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { describeNumberRule, SpecReader } from './spec-reader.js';
import type { FieldRead, MappingRules, NumberRule } from './spec-reader.js';
import { parseYamlTree } from './yaml-tree.js';
import type { YamlValue } from './yaml-tree.js';

// Settings declared once (docs/architecture.md, 'Code shapes' 15): one table per config kind drives
// reading the file, the environment overrides, writing a config back and the README's tables.

/** What a setting holds and how its text is checked. */
export type SettingType =
  | { readonly kind: 'text' }
  /** A password given inline; the docs steer towards the matching password_file. */
  | { readonly kind: 'secret' }
  /** A DNS label (RFC 1123): member, cluster and stanza names. */
  | { readonly kind: 'name' }
  /** An absolute path, kept normalized. */
  | { readonly kind: 'path' }
  /** A non-empty shell command. */
  | { readonly kind: 'command' }
  | { readonly kind: 'os-user' }
  | { readonly kind: 'int'; readonly rule: NumberRule; readonly unit?: string }
  | { readonly kind: 'bool' }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  /** `wildcard: false` for addresses other members connect to. */
  | { readonly kind: 'host-port'; readonly wildcard: boolean }
  /** At least one http:// or https:// URL, kept as `scheme://host:port`. */
  | { readonly kind: 'etcd-urls' }
  /** IP addresses or CIDR blocks. */
  | { readonly kind: 'ip-list' }
  /** Patroni's dynamic configuration (bootstrap.dcs), read by readDynamicConfiguration. */
  | { readonly kind: 'dynamic-config' };

export type SettingKind = SettingType['kind'];

/** The typed value of a setting of type `T`. */
export type ValueOf<T extends SettingType> = T extends { readonly kind: 'int' }
  ? number
  : T extends { readonly kind: 'bool' }
    ? boolean
    : T extends { readonly kind: 'enum'; readonly values: readonly (infer V)[] }
      ? V
      : T extends { readonly kind: 'host-port' }
        ? HostPort
        : T extends { readonly kind: 'etcd-urls' | 'ip-list' }
          ? readonly string[]
          : T extends { readonly kind: 'dynamic-config' }
            ? DynamicConfig
            : string;

interface SettingCommon {
  /** Dotted path in the file (`etcd.cacert`, `tags.replicatefrom`). */
  readonly key: string;
  /** The variable that overrides the file; an empty variable counts as unset. */
  readonly env?: string;
  /** One line for the README; also the `required: …` message of a missing required setting. */
  readonly describe: string;
  readonly required?: true;
  /** How an unset setting without a fixed default is derived (for the README): `restapi.listen`. */
  readonly derived?: string;
  /** The other setting of a pair that is set together or not at all (etcd.cert with etcd.key). */
  readonly pairedWith?: string;
  /**
   * The other way to give the same value (password_file for password): at most one may be set, and
   * one given in the environment replaces the file's (whichever of the two the file used).
   */
  readonly exclusiveWith?: string;
}

type SettingOf<T extends SettingType> = SettingCommon & { readonly type: T; readonly default?: ValueOf<T> };

/** One row of a settings table. */
export type SettingSpec = { [K in SettingKind]: SettingOf<Extract<SettingType, { readonly kind: K }>> }[SettingKind];

/** Per-section rules that are not settings: keys accepted with a notice, and spellings from other tools. */
export interface SectionRules {
  readonly ignored?: Readonly<Record<string, string>>;
  readonly hints?: Readonly<Record<string, string>>;
}

/** A config kind: its settings, and the rules of its sections ('' is the document itself). */
export interface SettingsTable {
  readonly settings: readonly SettingSpec[];
  readonly sections: Readonly<Record<string, SectionRules>>;
}

type HasValue<E> = E extends { readonly required: true } ? true : E extends { readonly default: unknown } ? true : false;

/** The settings a file reads to: those with a default or required always there, the others when set. */
export type SettingsOf<T extends readonly SettingSpec[]> = {
  readonly [E in T[number] as HasValue<E> extends true ? E['key'] : never]: ValueOf<E['type']>;
} & {
  readonly [E in T[number] as HasValue<E> extends true ? never : E['key']]?: ValueOf<E['type']>;
};

/** What a config is written from: required settings, and any others (a missing one reads as its default). */
export type SettingsInputOf<T extends readonly SettingSpec[]> = {
  readonly [E in T[number] as E extends { readonly required: true } ? E['key'] : never]: ValueOf<E['type']>;
} & {
  readonly [E in T[number] as E extends { readonly required: true } ? never : E['key']]?: ValueOf<E['type']>;
};

/** SpecError.file of problems with environment variables (their field is the variable's name). */
export const ENVIRONMENT = 'environment';

/** The site of a problem with an environment variable. */
export function envSite(variable: string): SpecSite {
  return { file: ENVIRONMENT, line: 0, col: 0, field: variable };
}

export type ReadSettingsResult =
  | { readonly ok: true; readonly values: Readonly<Record<string, unknown>>; readonly notices: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

/**
 * The settings of a config file by `table`, variables in `env` winning over the file: each setting
 * typed and checked, with the pair and either-or rules, but none of a config kind's cross-setting
 * rules. What stringifySettings writes reads back to the same values. Pure.
 */
export function readSettings(table: SettingsTable, text: string, file: string, env: Readonly<Record<string, string | undefined>>): ReadSettingsResult {
  const tree = parseYamlTree(text, file);
  if (!tree.ok) return { ok: false, errors: tree.errors };
  const reader = new SpecReader(file);
  reader.notices.push(...tree.warnings);
  const settings = new SettingsReader(table, reader, env);
  const values = settings.readFile(tree.root) ? settings.values() : undefined;
  if (values === undefined || reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, values, notices: sortSpecErrors(reader.notices) };
}

/** A setting's raw value: from the file (a YAML value) or from the environment (text), with where. */
type Raw = { readonly from: 'file'; readonly value: YamlValue; readonly site: SpecSite } | { readonly from: 'env'; readonly text: string; readonly site: SpecSite };

/**
 * Reads one file's settings by a table: the file's structure and unknown keys (with did-you-mean),
 * then each setting, the environment winning over the file, typed and checked. Problems go to the
 * SpecReader; a setting that fails is left out of the values, so the caller's cross-setting checks
 * see only good values and users get every problem of the file at once.
 */
export class SettingsReader {
  private readonly raw = new Map<string, Raw>();
  /** Sites of mappings, so that a missing setting is reported at its parent. */
  private readonly sectionSites = new Map<string, SpecSite>();
  private readonly byKey: ReadonlyMap<string, SettingSpec>;
  private rootSite: SpecSite;

  constructor(
    private readonly table: SettingsTable,
    readonly reader: SpecReader,
    private readonly env: Readonly<Record<string, string | undefined>>,
  ) {
    this.rootSite = reader.root({ line: 1, col: 1 });
    this.byKey = new Map(table.settings.map((s) => [s.key, s]));
  }

  /** Records the file's values; false when the document is not a mapping. */
  readFile(root: YamlValue | undefined): boolean {
    if (root === undefined) return true;
    this.rootSite = this.reader.root(root);
    return this.reader.mapping(root, this.rootSite, this.rulesFor(''));
  }

  /** Every setting, typed; those that failed their check are absent (and reported). */
  values(): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const s of this.table.settings) {
      const raw = this.pick(s.key);
      if (raw === undefined) {
        if (s.required === true) this.missing(s.key);
        else if (s.default !== undefined) values[s.key] = s.default;
        continue;
      }
      const v = this.parse(s, raw);
      if (v !== undefined) values[s.key] = v;
    }
    for (const s of this.table.settings) {
      if (s.pairedWith !== undefined && this.isSet(s.key) !== this.isSet(s.pairedWith)) {
        this.reader.error(this.site(this.isSet(s.key) ? s.pairedWith : s.key), `${s.key} and ${s.pairedWith} go together: set both or neither`);
      }
      if (s.exclusiveWith !== undefined) this.checkExclusive(s, s.exclusiveWith);
    }
    return values;
  }

  /** True when the file or the environment gives the setting (a default does not count). */
  isSet(key: string): boolean {
    return this.pick(key) !== undefined;
  }

  /** Where a setting was given, or, when it was not, its parent section (or the document) with its field. */
  site(key: string): SpecSite {
    const raw = this.pick(key);
    if (raw !== undefined) return raw.site;
    const parts = key.split('.');
    for (let i = parts.length - 1; i > 0; i--) {
      const s = this.sectionSites.get(parts.slice(0, i).join('.'));
      if (s !== undefined) return { ...s, field: key };
    }
    return { ...this.rootSite, field: key };
  }

  /** Reports a required setting as missing, naming the file key and the variable. */
  missing(key: string, what = this.spec(key).describe): undefined {
    const env = this.spec(key).env;
    const where = env === undefined ? `set ${key} in ${this.reader.file}` : `set ${key} in ${this.reader.file} or ${env} in the environment`;
    return this.reader.missing(this.site(key), `required: ${what}; ${where}`);
  }

  private spec(key: string): SettingSpec {
    const s = this.byKey.get(key);
    if (s === undefined) throw new Error(`no setting ${key} in the table`);
    return s;
  }

  private variable(key: string): string | undefined {
    const name = this.spec(key).env;
    const text = name === undefined ? undefined : this.env[name];
    return text === undefined || text === '' ? undefined : text;
  }

  /** The raw value of a setting: the environment, else the file unless the environment gives its alternative. */
  private pick(key: string): Raw | undefined {
    const s = this.spec(key);
    const text = this.variable(key);
    if (text !== undefined && s.env !== undefined) return { from: 'env', text, site: envSite(s.env) };
    const alternative = s.exclusiveWith ?? this.table.settings.find((o) => o.exclusiveWith === key)?.key;
    if (alternative !== undefined && this.variable(alternative) !== undefined) return undefined;
    return this.raw.get(key);
  }

  private checkExclusive(s: SettingSpec, other: string): void {
    const mine = s.env;
    const theirs = this.spec(other).env;
    if (mine !== undefined && theirs !== undefined && this.variable(s.key) !== undefined && this.variable(other) !== undefined) {
      this.reader.error(envSite(mine), `set only one of ${theirs} and ${mine}`);
    } else if (this.isSet(s.key) && this.isSet(other)) {
      this.reader.error(this.site(s.key), `set either ${other} or ${s.key}, not both`);
    }
  }

  private rulesFor(section: string): MappingRules {
    const prefix = section === '' ? '' : `${section}.`;
    const read: Record<string, FieldRead> = {};
    for (const s of this.table.settings) {
      if (!s.key.startsWith(prefix)) continue;
      const rest = s.key.slice(prefix.length);
      const dot = rest.indexOf('.');
      if (dot < 0) {
        read[rest] = (value, site) => this.raw.set(s.key, { from: 'file', value, site });
      } else {
        const child = rest.slice(0, dot);
        const path = `${prefix}${child}`;
        read[child] ??= (value, site) => {
          this.sectionSites.set(path, site);
          this.reader.mapping(value, site, this.rulesFor(path));
        };
      }
    }
    const rules = this.table.sections[section] ?? {};
    return { read, ...(rules.ignored === undefined ? {} : { ignored: rules.ignored }), ...(rules.hints === undefined ? {} : { hints: rules.hints }) };
  }

  private parse(s: SettingSpec, raw: Raw): unknown {
    const r = this.reader;
    switch (s.type.kind) {
      case 'text':
      case 'secret':
        return this.text(raw);
      case 'name':
        return this.checked(raw, (v, site) => {
          const problem = dnsLabelProblem(v);
          return problem === undefined ? v : r.error(site, problem);
        });
      case 'path':
        return this.checked(raw, (v, site) => (posix.isAbsolute(v) ? posix.normalize(v) : r.error(site, `must be an absolute path (got ${JSON.stringify(v)})`)));
      case 'command':
        return this.checked(raw, (v, site) => (v.trim() === '' ? r.error(site, 'must be a non-empty shell command') : v));
      case 'os-user':
        return this.checked(raw, (v, site) => (OS_USER.test(v) ? v : r.error(site, `must be an OS user name (got ${JSON.stringify(v)})`)));
      case 'int':
        return this.integer(raw, s.type.rule);
      case 'bool':
        return this.bool(raw);
      case 'enum': {
        const values = s.type.values;
        return this.checked(raw, (v, site) => values.find((x) => x === v) ?? r.error(site, `must be ${describeChoice(values)} (got ${JSON.stringify(v)})`));
      }
      case 'host-port': {
        const wildcard = s.type.wildcard;
        return this.checked(raw, (v, site) => {
          const hp = parseHostPort(v);
          if (hp === undefined) return r.error(site, `must be host:port with a port from 1 to 65535 (got ${JSON.stringify(v)})`);
          if (!wildcard && WILDCARD_HOSTS.has(hp.host)) return r.error(site, `must be an address other members can connect to, not the wildcard ${hp.host}`);
          return hp;
        });
      }
      case 'etcd-urls':
        return this.etcdUrls(raw);
      case 'ip-list':
        return this.ipList(raw);
      case 'dynamic-config':
        return this.dynamicConfig(raw);
    }
  }

  private text(raw: Raw): string | undefined {
    return raw.from === 'env' ? raw.text : this.reader.string(raw.value, raw.site);
  }

  private checked<T>(raw: Raw, check: (v: string, site: SpecSite) => T | undefined): T | undefined {
    const v = this.text(raw);
    return v === undefined ? undefined : check(v, raw.site);
  }

  private bool(raw: Raw): boolean | undefined {
    if (raw.from === 'file') return this.reader.boolean(raw.value, raw.site);
    const t = raw.text.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(t)) return true;
    if (['false', '0', 'no', 'off'].includes(t)) return false;
    return this.reader.error(raw.site, `must be true or false (got ${JSON.stringify(raw.text)})`);
  }

  private integer(raw: Raw, rule: NumberRule): number | undefined {
    if (raw.from === 'file') return this.reader.number(raw.value, raw.site, rule);
    const n = /^-?\d+$/.test(raw.text.trim()) ? Number(raw.text.trim()) : Number.NaN;
    const fits = Number.isSafeInteger(n) && (rule.min === undefined || n >= rule.min) && (rule.max === undefined || n <= rule.max);
    return fits ? n : this.reader.error(raw.site, `must be ${describeNumberRule(rule)} (got ${JSON.stringify(raw.text)})`);
  }

  /** The items of a list setting, each with its site: a YAML list, or a comma-separated string (file or variable). */
  private listEntries(raw: Raw): { text: string; site: SpecSite }[] | undefined {
    const r = this.reader;
    const entries: { text: string; site: SpecSite }[] = [];
    if (raw.from === 'env') {
      for (const part of raw.text.split(',')) entries.push({ text: part.trim(), site: raw.site });
    } else if (raw.value.kind === 'list') {
      r.list(raw.value, raw.site, (item, site) => {
        const t = r.string(item, site);
        if (t !== undefined) entries.push({ text: t, site });
      });
    } else {
      const t = r.string(raw.value, raw.site);
      if (t === undefined) return undefined;
      for (const part of t.split(',')) entries.push({ text: part.trim(), site: raw.site });
    }
    return entries;
  }

  private etcdUrls(raw: Raw): string[] | undefined {
    const r = this.reader;
    const entries = this.listEntries(raw);
    if (entries === undefined) return undefined;
    const before = r.errors.length;
    const urls = entries.map(({ text, site }) => normalizeEtcdUrl(text) ?? r.error(site, `must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:2379 (got ${JSON.stringify(text)})`));
    if (r.errors.length > before) return undefined;
    if (urls.length === 0) return r.error(raw.site, 'must list at least one etcd URL');
    return urls.filter((u): u is string => u !== undefined);
  }

  private ipList(raw: Raw): string[] | undefined {
    const r = this.reader;
    const entries = this.listEntries(raw);
    if (entries === undefined) return undefined;
    const before = r.errors.length;
    for (const { text, site } of entries) {
      const [addr, bits, extra] = text.split('/');
      const family = isIP(addr ?? '');
      const maxBits = family === 6 ? 128 : 32;
      const bitsOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= maxBits);
      if (family === 0 || !bitsOk || extra !== undefined) r.error(site, `must be an IP address or CIDR block, e.g. 10.0.0.0/8 (got ${JSON.stringify(text)})`);
    }
    return r.errors.length > before ? undefined : entries.map((e) => e.text);
  }

  private dynamicConfig(raw: Raw): DynamicConfig | undefined {
    // No variable overrides a whole mapping: the table gives dynamic-config settings none.
    if (raw.from === 'env') return this.reader.error(raw.site, 'cannot be set from the environment');
    const draft = new DynamicConfigDraft(this.reader);
    readDynamicConfiguration(this.reader, raw.value, raw.site, draft);
    return draft.build(raw.site);
  }
}

/** Linux user names as useradd accepts them by default. */
const OS_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
export const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['*', '0.0.0.0', '::']);

/** `a, b or c` for a short list, `one of a, b, c, d` for a longer one. */
function describeChoice(values: readonly string[]): string {
  if (values.length > 3) return `one of ${values.join(', ')}`;
  return values.length <= 1 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1] ?? ''}`;
}

/**
 * The YAML document of `values` by `table`: every setting that is set, in table order, except those
 * equal to their default (they read back the same); `comment` heads the file.
 */
export function stringifySettings(table: SettingsTable, values: Readonly<Record<string, unknown>>, comment: string): string {
  const root: Record<string, unknown> = {};
  for (const s of table.settings) {
    const v = values[s.key];
    if (v === undefined || (s.default !== undefined && isDeepStrictEqual(v, s.default))) continue;
    const parts = s.key.split('.');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (typeof next === 'object' && next !== null) node = next as Record<string, unknown>;
      else node = node[part] = {};
    }
    node[parts[parts.length - 1] ?? s.key] = fileValue(s.type, v);
  }
  const doc = new Document(root);
  doc.commentBefore = comment;
  return doc.toString();
}

function fileValue(type: SettingType, v: unknown): unknown {
  switch (type.kind) {
    case 'host-port':
      return formatHostPort(v as HostPort);
    case 'etcd-urls':
    case 'ip-list':
      return [...(v as readonly string[])];
    case 'dynamic-config': {
      const c = v as DynamicConfig;
      return { ...c, postgresql: { use_pg_rewind: c.postgresql.use_pg_rewind, parameters: { ...c.postgresql.parameters } } };
    }
    case 'text':
    case 'secret':
    case 'name':
    case 'path':
    case 'command':
    case 'os-user':
    case 'int':
    case 'bool':
    case 'enum':
      return v;
  }
}

/** A setting's type as the README names it. */
export function describeType(type: SettingType): string {
  switch (type.kind) {
    case 'text':
      return 'string';
    case 'secret':
      return 'string (secret)';
    case 'name':
      return 'DNS label';
    case 'path':
      return 'absolute path';
    case 'command':
      return 'shell command';
    case 'os-user':
      return 'OS user name';
    case 'int':
      return `${describeNumberRule(type.rule).replace(/^an /, '')}${type.unit === undefined ? '' : ` (${type.unit})`}`;
    case 'bool':
      return 'true/false';
    case 'enum':
      return `one of ${type.values.join(', ')}`;
    case 'host-port':
      return type.wildcard ? 'host:port' : 'host:port (not a wildcard)';
    case 'etcd-urls':
      return 'list of http(s) URLs (comma-separated in the variable)';
    case 'ip-list':
      return 'list of IPs / CIDR blocks (comma-separated in the variable)';
    case 'dynamic-config':
      return 'mapping (Patroni dynamic configuration)';
  }
}

/** The pair and either-or rules of a setting, as the README states them. */
function constraints(table: SettingsTable, s: SettingSpec): string {
  const notes: string[] = [];
  const partner = s.pairedWith ?? table.settings.find((o) => o.pairedWith === s.key)?.key;
  if (partner !== undefined) notes.push(`set together with \`${partner}\``);
  const alternative = s.exclusiveWith ?? table.settings.find((o) => o.exclusiveWith === s.key)?.key;
  if (alternative !== undefined) notes.push(`not with \`${alternative}\``);
  return notes.map((n) => `; ${n}`).join('');
}

/** The markdown reference table of a settings table: key, variable, type, default, description. */
export function renderSettingsTable(table: SettingsTable): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = ['| key | environment | type | default | description |', '|---|---|---|---|---|'];
  for (const s of table.settings) {
    const def =
      s.required === true
        ? '**required**'
        : s.default !== undefined
          ? s.type.kind === 'dynamic-config'
            ? 'the defaults under [Timing defaults](#timing-defaults-and-why-they-are-safe)'
            : `\`${JSON.stringify(fileValue(s.type, s.default)).replace(/^"(.*)"$/, '$1')}\``
          : s.derived ?? 'unset';
    const type = s.type.kind === 'enum' ? s.type.values.map((v) => `\`${v}\``).join(' \\| ') : cell(describeType(s.type));
    lines.push(`| \`${s.key}\` | ${s.env === undefined ? '—' : `\`${s.env}\``} | ${type} | ${def} | ${cell(s.describe)}${constraints(table, s)} |`);
  }
  return `${lines.join('\n')}\n`;
}
