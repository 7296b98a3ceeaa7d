import { didYouMean } from './did-you-mean.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import type { YamlPosition, YamlValue } from './yaml-tree.js';

/** Reads one field's value; problems are reported to the reader, never thrown. */
export type FieldRead = (value: YamlValue, site: SpecSite) => void;

/** How the keys of one mapping are handled. Keys not listed anywhere are errors with a suggestion. */
export interface MappingRules {
  /** Keys that are read. */
  readonly read?: Readonly<Record<string, FieldRead>>;
  /** Keys that are accepted but have no effect here: key -> notice text. */
  readonly ignored?: Readonly<Record<string, string>>;
  /** Well-known spellings from other tools: unknown key -> the key meant. */
  readonly hints?: Readonly<Record<string, string>>;
  /** Open mappings (Kubernetes metadata) turn unknown keys into notices instead of errors. */
  readonly open?: string;
}

/** Bounds for a numeric field; the description in messages is derived from them. */
export interface NumberRule {
  readonly integer?: boolean;
  readonly min?: number;
  /** Exclusive lower bound. */
  readonly gt?: number;
  readonly max?: number;
}

export const NOT_APPLIED = 'not applied in the local runtime';

/**
 * Collects errors and notices for one file while typed values are read out of a positioned YAML
 * tree. Every read returns undefined after reporting, so callers keep going and users see all
 * problems of a file at once.
 */
export class SpecReader {
  readonly errors: SpecError[] = [];
  readonly notices: SpecNotice[] = [];
  /** Fields an unknown key was taken to be a typo of; their "required" errors would only repeat it. */
  private readonly suggested = new Set<string>();

  constructor(readonly file: string) {}

  /** The site of a top-level field or of the document itself (field ''). */
  root(pos: YamlPosition, field = ''): SpecSite {
    return { file: this.file, line: pos.line, col: pos.col, field };
  }

  error(site: SpecSite, message: string): undefined {
    this.errors.push({ file: site.file, line: site.line, col: site.col, field: site.field, message });
    return undefined;
  }

  /** Reports a missing required field, unless a misspelt key already pointed at it. */
  missing(site: SpecSite, message: string): undefined {
    const f = site.field;
    const repeats = [...this.suggested].some((s) => f === s || f.startsWith(`${s}.`) || f.startsWith(`${s}[`));
    if (!repeats) this.error(site, message);
    return undefined;
  }

  notice(site: SpecSite, message: string): void {
    this.notices.push({ file: site.file, line: site.line, col: site.col, field: site.field, message });
  }

  /**
   * Reads a mapping by `rules`, in file order. A null value (`key:` with nothing after it) counts as
   * an empty mapping, as in Kubernetes. Returns false when `value` is not a mapping.
   */
  mapping(value: YamlValue, site: SpecSite, rules: MappingRules): boolean {
    if (value.kind === 'scalar' && value.value === null) return true;
    if (value.kind !== 'map') {
      this.error(site, `must be a mapping (got ${describeValue(value)})`);
      return false;
    }
    const read = rules.read ?? {};
    const ignored = rules.ignored ?? {};
    for (const entry of value.entries) {
      const child = childSite(site, entry.key, entry.keyPos);
      const reader = Object.hasOwn(read, entry.key) ? read[entry.key] : undefined;
      if (reader !== undefined) {
        reader(entry.value, child);
        continue;
      }
      const ignoredText = Object.hasOwn(ignored, entry.key) ? ignored[entry.key] : undefined;
      if (ignoredText !== undefined) {
        this.notice(child, ignoredText);
        continue;
      }
      if (rules.open !== undefined) {
        this.notice(child, rules.open);
        continue;
      }
      const known = [...Object.keys(read), ...Object.keys(ignored)];
      const suggestion = suggestField(entry.key, known, rules.hints);
      if (suggestion !== undefined) this.suggested.add(childSite(site, suggestion, entry.keyPos).field);
      this.error(child, unknownFieldMessage(entry.key, known, suggestion));
    }
    return true;
  }

  /** Reads each item of a list; a null value counts as an empty list. Returns false when not a list. */
  list(value: YamlValue, site: SpecSite, readItem: (item: YamlValue, site: SpecSite, index: number) => void): boolean {
    if (value.kind === 'scalar' && value.value === null) return true;
    if (value.kind !== 'list') {
      this.error(site, `must be a list (got ${describeValue(value)})`);
      return false;
    }
    value.items.forEach((item, index) => readItem(item, itemSite(site, index, item), index));
    return true;
  }

  number(value: YamlValue, site: SpecSite, rule: NumberRule): number | undefined {
    const v = value.kind === 'scalar' ? value.value : undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !numberFits(v, rule)) {
      return this.error(site, `must be ${describeNumberRule(rule)} (got ${describeValue(value)})`);
    }
    return v;
  }

  boolean(value: YamlValue, site: SpecSite): boolean | undefined {
    if (value.kind === 'scalar' && typeof value.value === 'boolean') return value.value;
    return this.error(site, `must be true or false (got ${describeValue(value)})`);
  }

  /** A non-empty string. */
  string(value: YamlValue, site: SpecSite): string | undefined {
    if (value.kind === 'scalar' && typeof value.value === 'string' && value.value !== '') return value.value;
    return this.error(site, `must be a non-empty string (got ${describeValue(value)})`);
  }

  /** One of a fixed set of strings; the message lists them. */
  oneOf<T extends string>(value: YamlValue, site: SpecSite, allowed: readonly T[]): T | undefined {
    const v = value.kind === 'scalar' ? value.value : undefined;
    const hit = allowed.find((a) => a === v);
    if (hit !== undefined) return hit;
    return this.error(site, `must be one of ${allowed.join(', ')} (got ${describeValue(value)})`);
  }
}

/** The site of `key` inside the mapping at `parent`; keys that are not identifiers are bracket-quoted. */
export function childSite(parent: SpecSite, key: string, pos: YamlPosition): SpecSite {
  const segment = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
  const field = parent.field === '' ? segment : segment.startsWith('[') ? `${parent.field}${segment}` : `${parent.field}.${segment}`;
  return { file: parent.file, line: pos.line, col: pos.col, field };
}

export function itemSite(parent: SpecSite, index: number, pos: YamlPosition): SpecSite {
  return { file: parent.file, line: pos.line, col: pos.col, field: `${parent.field}[${index}]` };
}

function suggestField(key: string, known: readonly string[], hints?: Readonly<Record<string, string>>): string | undefined {
  const hinted = hints !== undefined && Object.hasOwn(hints, key) ? hints[key] : undefined;
  return hinted ?? didYouMean(key, known);
}

function unknownFieldMessage(key: string, known: readonly string[], suggestion: string | undefined): string {
  if (suggestion !== undefined) return `unknown field "${key}"; did you mean "${suggestion}"?`;
  return `unknown field "${key}" (expected one of: ${[...known].sort().join(', ')})`;
}

/** Short rendering of a value for messages: strings quoted, collections named. */
export function describeValue(value: YamlValue): string {
  switch (value.kind) {
    case 'map':
      return 'a mapping';
    case 'list':
      return 'a list';
    case 'scalar':
      return typeof value.value === 'string' ? JSON.stringify(value.value) : String(value.value);
  }
}

function numberFits(v: number, rule: NumberRule): boolean {
  if (rule.integer === true && !Number.isInteger(v)) return false;
  if (rule.min !== undefined && v < rule.min) return false;
  if (rule.gt !== undefined && v <= rule.gt) return false;
  if (rule.max !== undefined && v > rule.max) return false;
  return true;
}

export function describeNumberRule(rule: NumberRule): string {
  const noun = rule.integer === true ? 'an integer' : 'a number';
  if (rule.min !== undefined && rule.max !== undefined) return `${noun} from ${rule.min} to ${rule.max}`;
  const bounds: string[] = [];
  if (rule.gt !== undefined) bounds.push(`> ${rule.gt}`);
  if (rule.min !== undefined) bounds.push(`≥ ${rule.min}`);
  if (rule.max !== undefined) bounds.push(`≤ ${rule.max}`);
  return bounds.length === 0 ? noun : `${noun} ${bounds.join(' and ')}`;
}
