import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import type { SpecError, SpecNotice } from './spec-error.js';

/** A YAML value with the 1-based position where it starts; aliases are already resolved. */
export type YamlValue = YamlMapValue | YamlListValue | YamlScalarValue;

export interface YamlPosition {
  readonly line: number;
  readonly col: number;
}

export interface YamlMapValue extends YamlPosition {
  readonly kind: 'map';
  readonly entries: readonly YamlEntry[];
}

export interface YamlEntry {
  readonly key: string;
  /** Position of the key: errors about a field point at its name. */
  readonly keyPos: YamlPosition;
  readonly value: YamlValue;
}

export interface YamlListValue extends YamlPosition {
  readonly kind: 'list';
  readonly items: readonly YamlValue[];
}

export interface YamlScalarValue extends YamlPosition {
  readonly kind: 'scalar';
  /** string, finite or non-finite number, boolean or null, as the YAML 1.2 core schema resolves it. */
  readonly value: string | number | boolean | null;
  /** Written in single or double quotes: the text starts one column after `col`. */
  readonly quoted?: boolean;
}

export type YamlTreeResult =
  | { readonly ok: true; readonly root: YamlValue | undefined; readonly warnings: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

/**
 * Parses one YAML document into a positioned tree. Syntax errors (including duplicate keys and
 * several documents in one file) come back located at file:line:col; `root` is undefined for an
 * empty document.
 */
export function parseYamlTree(text: string, file: string): YamlTreeResult {
  const lineCounter = new LineCounter();
  // prettyErrors is off so that messages stay one line; positions come from the line counter.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): YamlPosition => lineCounter.linePos(offset);
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => ({ file, ...at(e.pos[0]), field: '', message: syntaxMessage(e.code, e.message) })),
    };
  }
  const warnings = doc.warnings.map((w) => ({ file, ...at(w.pos[0]), field: '', message: `YAML: ${firstLine(w.message)}` }));
  if (doc.contents === null) return { ok: true, root: undefined, warnings };
  const converter = new TreeConverter(doc, at, file);
  const root = converter.convert(doc.contents);
  if (converter.errors.length > 0) return { ok: false, errors: converter.errors };
  return { ok: true, root, warnings };
}

function syntaxMessage(code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') return 'YAML syntax error: the file must hold one YAML document, found another after ---';
  return `YAML syntax error: ${firstLine(message)}`;
}

function firstLine(message: string): string {
  return message.split('\n')[0]?.trim() ?? message;
}

class TreeConverter {
  readonly errors: SpecError[] = [];
  // Aliases resolve to the same converted subtree, so `*a` repeated many times costs nothing extra.
  private readonly done = new Map<YamlNode, YamlValue>();
  private readonly inProgress = new Set<YamlNode>();

  constructor(
    private readonly doc: Document,
    private readonly at: (offset: number) => YamlPosition,
    private readonly file: string,
  ) {}

  convert(node: unknown): YamlValue {
    if (isAlias(node)) {
      const target = node.resolve(this.doc);
      if (target === undefined) return this.fail(node.range?.[0] ?? 0, `unresolved alias *${node.source}`);
      return this.convert(target);
    }
    if (!isMap(node) && !isSeq(node) && !isScalar(node)) {
      return this.fail(0, 'unsupported YAML node');
    }
    const known = this.done.get(node);
    if (known !== undefined) return known;
    if (this.inProgress.has(node)) return this.fail(node.range?.[0] ?? 0, 'recursive alias');
    this.inProgress.add(node);
    const pos = this.at(node.range?.[0] ?? 0);
    let value: YamlValue;
    if (isMap(node)) {
      const entries: YamlEntry[] = [];
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyNode = isAlias(pair.key) ? pair.key.resolve(this.doc) : pair.key;
        if (!isScalar(keyNode)) {
          this.fail(rangeStart(pair.key) ?? node.range?.[0] ?? 0, 'mapping keys must be plain strings');
          continue;
        }
        const keyPos = this.at(rangeStart(pair.key) ?? node.range?.[0] ?? 0);
        // `key:` with nothing after it is a null scalar at the key's position.
        const v: YamlValue = pair.value === null ? { kind: 'scalar', value: null, ...keyPos } : this.convert(pair.value);
        entries.push({ key: String(keyNode.value), keyPos, value: v });
      }
      value = { kind: 'map', entries, ...pos };
    } else if (isSeq(node)) {
      value = { kind: 'list', items: node.items.map((item) => (item === null ? { kind: 'scalar', value: null, ...pos } : this.convert(item))), ...pos };
    } else {
      const quoted = isScalar(node) && (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE');
      value = { kind: 'scalar', value: scalarValue(node.value), ...pos, ...(quoted ? { quoted } : {}) };
    }
    this.inProgress.delete(node);
    this.done.set(node, value);
    return value;
  }

  private fail(offset: number, message: string): YamlValue {
    const pos = this.at(offset);
    this.errors.push({ file: this.file, ...pos, field: '', message: `YAML: ${message}` });
    return { kind: 'scalar', value: null, ...pos };
  }
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: readonly number[] | null } | null)?.range;
  return range?.[0];
}

function scalarValue(v: unknown): string | number | boolean | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return Number(v);
  // Other tags (e.g. !!binary) resolve to objects no field accepts; JSON keeps them recognisable in messages.
  return JSON.stringify(v) ?? 'unsupported value';
}
