import { WardenError } from './errors.js';

/** A PostgreSQL log sequence number as a byte position (bigint, exact beyond 2^53). */
export type Lsn = bigint;

/** Parses PostgreSQL's "X/Y" text form into a byte position. */
export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m || m[1] === undefined || m[2] === undefined) {
    throw new WardenError('internal', `not an LSN: ${JSON.stringify(text)}`);
  }
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Formats a byte position in PostgreSQL's "X/Y" text form. */
export function formatLsn(lsn: Lsn): string {
  const hi = lsn >> 32n;
  const lo = lsn & 0xffffffffn;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/** Bytes that `behind` trails `ahead` by; never negative. */
export function lagBytes(ahead: Lsn, behind: Lsn): number {
  const d = ahead - behind;
  return d > 0n ? Number(d) : 0;
}
