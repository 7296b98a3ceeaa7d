/**
 * A problem found in a spec or config file, located where a reader can fix it. `line` and `col` are
 * 1-based; both are 0 when the problem is not in the file (a setting from an environment variable,
 * a file that cannot be read), and `field` then names the variable or is empty.
 */
export interface SpecError {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Dotted path of the offending field (`spec.instances[0].replicas`), or '' for YAML syntax errors. */
  readonly field: string;
  readonly message: string;
}

/** Something accepted but worth telling the user, e.g. a Kubernetes-only field the local runtime ignores. */
export type SpecNotice = SpecError;

/** Where a value was read from: a file position plus its field path. */
export interface SpecSite {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly field: string;
}

/** One line (error or notice) in the compiler-like form `cluster.yaml:12:7: spec.patroni.dynamicConfiguration.ttl: message`. */
export function formatSpecError(e: SpecError): string {
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.col}` : e.file;
  const parts = [where, e.field, e.message].filter((p) => p !== '');
  return parts.join(': ');
}

/** Errors sorted by position (file order), so the first one printed is the first one in the file. */
export function sortSpecErrors<T extends SpecError>(errors: readonly T[]): T[] {
  return [...errors].sort((a, b) => a.line - b.line || a.col - b.col);
}
