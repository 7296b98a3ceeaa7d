/**
 * Small schema decoders for records read from outside (files, etcd, REST bodies): a decoder turns
 * `unknown` into a typed value or into the first problem found, with the path of the field
 * (`members[1].apiUrl: must be a string, got 42`). Decoding never throws.
 */
export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly path: string; readonly problem: string };

export type Decoder<T> = (input: unknown, path: string) => Decoded<T>;

/** The value a decoder produces. */
export type DecodedType<D> = D extends Decoder<infer T> ? T : never;

const ok = <T>(value: T): Decoded<T> => ({ ok: true, value });
const fail = (path: string, problem: string): Decoded<never> => ({ ok: false, path, problem });

/** A short description of a value for messages. */
export function describeInput(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  return typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' ? String(v) : typeof v;
}

export const str: Decoder<string> = (v, p) => (typeof v === 'string' ? ok(v) : fail(p, `must be a string, got ${describeInput(v)}`));

export const bool: Decoder<boolean> = (v, p) => (typeof v === 'boolean' ? ok(v) : fail(p, `must be true or false, got ${describeInput(v)}`));

/** A finite number within optional bounds (inclusive). */
export function num(bounds: { min?: number; max?: number; integer?: boolean } = {}): Decoder<number> {
  return (v, p) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return fail(p, `must be a number, got ${describeInput(v)}`);
    if (bounds.integer === true && !Number.isInteger(v)) return fail(p, `must be an integer, got ${v}`);
    if (bounds.min !== undefined && v < bounds.min) return fail(p, `must be ≥ ${bounds.min}, got ${v}`);
    if (bounds.max !== undefined && v > bounds.max) return fail(p, `must be ≤ ${bounds.max}, got ${v}`);
    return ok(v);
  };
}

/** A TCP port. */
export const port: Decoder<number> = num({ min: 0, max: 65535, integer: true });

export function oneOf<const T extends readonly (string | number | boolean)[]>(...values: T): Decoder<T[number]> {
  return (v, p) => ((values as readonly unknown[]).includes(v) ? ok(v as T[number]) : fail(p, `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${describeInput(v)}`));
}

export function nullable<T>(d: Decoder<T>): Decoder<T | null> {
  return (v, p) => (v === null ? ok(null) : d(v, p));
}

export function list<T>(d: Decoder<T>): Decoder<T[]> {
  return (v, p) => {
    if (!Array.isArray(v)) return fail(p, `must be a list, got ${describeInput(v)}`);
    const out: T[] = [];
    for (let i = 0; i < v.length; i++) {
      const r = d(v[i], `${p}[${i}]`);
      if (!r.ok) return r;
      out.push(r.value);
    }
    return ok(out);
  };
}

/** Marks a field of `obj` as optional: absent (or undefined) is fine; present must decode. */
export interface Optional<T> {
  readonly optional: Decoder<T>;
}

export function optional<T>(d: Decoder<T>): Optional<T> {
  return { optional: d };
}

type Fields = Record<string, Decoder<unknown> | Optional<unknown>>;
type Required<F extends Fields> = { [K in keyof F as F[K] extends Optional<unknown> ? never : K]: F[K] extends Decoder<infer T> ? T : never };
type Optionals<F extends Fields> = { [K in keyof F as F[K] extends Optional<unknown> ? K : never]?: F[K] extends Optional<infer T> ? T : never };
export type ObjectOf<F extends Fields> = Required<F> & Optionals<F>;

/** An object with these fields; fields not listed are kept out of the result (and allowed). */
export function obj<F extends Fields>(fields: F): Decoder<ObjectOf<F>> {
  return (v, p) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(p, `must be an object, got ${describeInput(v)}`);
    const rec = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [key, f] of Object.entries(fields)) {
      const at = p === '' ? key : `${p}.${key}`;
      const isOptional = typeof f === 'object';
      const d = isOptional ? f.optional : f;
      if (!Object.hasOwn(rec, key) || rec[key] === undefined) {
        if (isOptional) continue;
        return fail(at, 'is missing');
      }
      const r = d(rec[key], at);
      if (!r.ok) return r;
      out[key] = r.value;
    }
    return ok(out as ObjectOf<F>);
  };
}

/** Decodes `input` at the root; the problem sentence names the field. */
export function decode<T>(d: Decoder<T>, input: unknown): { ok: true; value: T } | { ok: false; error: string } {
  const r = d(input, '');
  return r.ok ? { ok: true, value: r.value } : { ok: false, error: r.path === '' ? r.problem : `${r.path}: ${r.problem}` };
}

/** Parses JSON text and decodes it; a syntax error is reported like a field problem. */
export function decodeJson<T>(d: Decoder<T>, text: string): { ok: true; value: T } | { ok: false; error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  return decode(d, parsed);
}
