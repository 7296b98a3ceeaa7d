import pino from 'pino';

/** The logging surface the agent needs (pino's, so structured fields come first). */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** A pino logger writing JSON lines to `file` (or stdout), tagged with the member name. */
export function createLogger(opts: { level: string; file?: string | undefined; name: string }): Logger {
  const dest = opts.file !== undefined ? pino.destination({ dest: opts.file, mkdir: true, sync: false }) : pino.destination(1);
  return pino({ level: opts.level, base: { member: opts.name }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };
