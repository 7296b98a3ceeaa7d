/**
 * The few pieces of the PostgreSQL wire protocol (v3) the router speaks itself: recognising the
 * client's first packet and answering with an ErrorResponse when it refuses a connection. Pure.
 * Reference: PostgreSQL docs, "Frontend/Backend Protocol — Message Formats".
 */

/** PostgreSQL's own bound on a startup packet (MAX_STARTUP_PACKET_LENGTH in pqcomm.h). */
export const MAX_STARTUP_PACKET_BYTES = 10_000;
export const SSL_REQUEST_CODE = 80_877_103;
export const GSSENC_REQUEST_CODE = 80_877_104;
export const CANCEL_REQUEST_CODE = 80_877_102;
const PROTOCOL_MAJOR = 3;

/** What the first bytes a client sent are. */
export type FirstPacket =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'ssl-request'; readonly length: number }
  | { readonly kind: 'gssenc-request'; readonly length: number }
  | { readonly kind: 'cancel-request'; readonly length: number }
  | {
      readonly kind: 'startup';
      readonly length: number;
      readonly protocol: { readonly major: number; readonly minor: number };
      readonly parameters: Readonly<Record<string, string>>;
    }
  | { readonly kind: 'invalid'; readonly reason: string };

/**
 * Classifies the packet at the start of `buf`. 'incomplete' means more bytes are needed (never more
 * than MAX_STARTUP_PACKET_BYTES in total); 'invalid' means the client is not speaking protocol 3.
 */
export function parseFirstPacket(buf: Buffer): FirstPacket {
  if (buf.length < 4) return { kind: 'incomplete' };
  const length = buf.readUInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET_BYTES) return { kind: 'invalid', reason: `invalid startup packet length ${length}` };
  if (buf.length < 8) return { kind: 'incomplete' };
  const code = buf.readUInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (length !== 8) return { kind: 'invalid', reason: `invalid ${code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest'} length ${length}` };
    return { kind: code === SSL_REQUEST_CODE ? 'ssl-request' : 'gssenc-request', length };
  }
  if (code === CANCEL_REQUEST_CODE) {
    // Cancel keys are 4 bytes up to protocol 3.0 and up to 256 bytes from 3.2 on.
    if (length < 16 || length > 12 + 256) return { kind: 'invalid', reason: `invalid CancelRequest length ${length}` };
    return buf.length < length ? { kind: 'incomplete' } : { kind: 'cancel-request', length };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== PROTOCOL_MAJOR) return { kind: 'invalid', reason: `unsupported frontend protocol ${major}.${minor}` };
  if (buf.length < length) return { kind: 'incomplete' };
  const parameters = parseStartupParameters(buf.subarray(8, length));
  if (parameters === undefined) return { kind: 'invalid', reason: 'malformed startup parameters' };
  return { kind: 'startup', length, protocol: { major, minor }, parameters };
}

/** name\0value\0 … \0 — undefined when not well formed. */
function parseStartupParameters(body: Buffer): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  let at = 0;
  for (;;) {
    if (at >= body.length) return undefined;
    if (body[at] === 0) return at === body.length - 1 ? out : undefined;
    const nameEnd = body.indexOf(0, at);
    if (nameEnd < 0) return undefined;
    const valueEnd = body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return undefined;
    out[body.toString('utf8', at, nameEnd)] = body.toString('utf8', nameEnd + 1, valueEnd);
    at = valueEnd + 1;
  }
}

/** One ErrorResponse field set; PostgreSQL clients read S/V (severity), C (SQLSTATE) and M (message). */
export interface PgError {
  readonly severity: 'FATAL' | 'ERROR';
  /** Five-character SQLSTATE, e.g. 57P03 (cannot_connect_now). */
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
}

/** SQLSTATE cannot_connect_now: what PostgreSQL itself answers while it starts or shuts down. */
export const CANNOT_CONNECT_NOW = '57P03';
/** SQLSTATE too_many_connections. */
export const TOO_MANY_CONNECTIONS = '53300';

/** Encodes an ErrorResponse ('E') message. */
export function encodeErrorResponse(e: PgError): Buffer {
  const fields: [string, string][] = [
    ['S', e.severity],
    ['V', e.severity],
    ['C', e.code],
    ['M', e.message],
  ];
  if (e.detail !== undefined) fields.push(['D', e.detail]);
  if (e.hint !== undefined) fields.push(['H', e.hint]);
  const parts = fields.map(([k, v]) => Buffer.concat([Buffer.from(k, 'ascii'), Buffer.from(v.replaceAll('\0', ''), 'utf8'), Buffer.from([0])]));
  const body = Buffer.concat([...parts, Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'ascii');
  header.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/** Decodes an ErrorResponse (tests and diagnostics); undefined when `buf` does not start with a whole one. */
export function decodeErrorResponse(buf: Buffer): Record<string, string> | undefined {
  if (buf.length < 5 || buf.toString('ascii', 0, 1) !== 'E') return undefined;
  const length = buf.readUInt32BE(1);
  if (buf.length < 1 + length) return undefined;
  const out: Record<string, string> = {};
  let at = 5;
  while (at < 1 + length && buf[at] !== 0) {
    const key = buf.toString('ascii', at, at + 1);
    const end = buf.indexOf(0, at + 1);
    if (end < 0) return undefined;
    out[key] = buf.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return out;
}

/** What to do next with a refused client's bytes (see `refusalStep`). */
export type RefusalStep =
  | { readonly action: 'wait' }
  /** Answer 'N' (no SSL / no GSS encryption) and drop `consumed` bytes: the client then sends its startup packet in clear. */
  | { readonly action: 'decline-encryption'; readonly consumed: number }
  /** The client sent its startup packet: send the ErrorResponse and close. */
  | { readonly action: 'send-error' }
  /** A cancel request or garbage: close without an answer, as PostgreSQL does. */
  | { readonly action: 'close'; readonly reason: string };

/**
 * The refusal handshake: a client that asked for SSL or GSS encryption is told 'N' first so that it
 * sends a startup packet it can read an ErrorResponse after; anything else gets the error at once.
 */
export function refusalStep(buf: Buffer): RefusalStep {
  const p = parseFirstPacket(buf);
  switch (p.kind) {
    case 'incomplete':
      return { action: 'wait' };
    case 'ssl-request':
    case 'gssenc-request':
      return { action: 'decline-encryption', consumed: p.length };
    case 'startup':
      return { action: 'send-error' };
    case 'cancel-request':
      return { action: 'close', reason: 'cancel request' };
    case 'invalid':
      return { action: 'close', reason: p.reason };
  }
}

/** A StartupMessage for protocol 3.0 (tests and benchmarks). */
export function encodeStartupMessage(parameters: Readonly<Record<string, string>>): Buffer {
  const body = Buffer.concat([
    ...Object.entries(parameters).map(([k, v]) => Buffer.from(`${k}\0${v}\0`, 'utf8')),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(PROTOCOL_MAJOR << 16, 4);
  return Buffer.concat([head, body]);
}

/** An SSLRequest (or, with `gss`, a GSSENCRequest) packet. */
export function encodeEncryptionRequest(gss = false): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(8, 0);
  b.writeUInt32BE(gss ? GSSENC_REQUEST_CODE : SSL_REQUEST_CODE, 4);
  return b;
}
