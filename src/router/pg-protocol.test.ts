import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CANCEL_REQUEST_CODE,
  decodeErrorResponse,
  encodeEncryptionRequest,
  encodeErrorResponse,
  encodeStartupMessage,
  MAX_STARTUP_PACKET_BYTES,
  parseFirstPacket,
  refusalStep,
} from './pg-protocol.js';

function packet(length: number, code: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(length, 0);
  b.writeUInt32BE(code, 4);
  return Buffer.concat([b, rest]);
}

describe('parseFirstPacket', () => {
  const startup = encodeStartupMessage({ user: 'postgres', database: 'db', application_name: 'x' });
  const cancel = packet(16, CANCEL_REQUEST_CODE, Buffer.alloc(8, 1));
  const cases: { name: string; buf: Buffer; kind: string; reason?: RegExp }[] = [
    { name: 'waits for a length', buf: Buffer.from([0, 0]), kind: 'incomplete' },
    { name: 'waits for the code', buf: Buffer.from([0, 0, 0, 8, 4]), kind: 'incomplete' },
    { name: 'recognises an SSLRequest', buf: encodeEncryptionRequest(), kind: 'ssl-request' },
    { name: 'recognises a GSSENCRequest', buf: encodeEncryptionRequest(true), kind: 'gssenc-request' },
    { name: 'recognises a startup message', buf: startup, kind: 'startup' },
    { name: 'waits for the rest of a startup message', buf: startup.subarray(0, startup.length - 1), kind: 'incomplete' },
    { name: 'recognises a cancel request', buf: cancel, kind: 'cancel-request' },
    { name: 'waits for the rest of a cancel request', buf: cancel.subarray(0, 12), kind: 'incomplete' },
    { name: 'rejects a length below 8', buf: Buffer.from([0, 0, 0, 4]), kind: 'invalid', reason: /length 4/ },
    { name: 'rejects a length above PostgreSQL\'s bound at once, before reading it', buf: Buffer.from([0, 1, 0, 0]), kind: 'invalid', reason: /length 65536/ },
    { name: 'rejects HTTP sent to the port', buf: Buffer.from('GET / HTTP/1.1\r\n\r\n'), kind: 'invalid' },
    { name: 'rejects protocol 2', buf: packet(9, 2 << 16, Buffer.from([0])), kind: 'invalid', reason: /unsupported frontend protocol 2\.0/ },
    { name: 'rejects an SSLRequest of the wrong length', buf: packet(12, 80_877_103, Buffer.alloc(4)), kind: 'invalid' },
    { name: 'rejects startup parameters without their terminator', buf: packet(13, 3 << 16, Buffer.from('user\0')), kind: 'invalid', reason: /malformed/ },
    { name: 'rejects a name without a value', buf: packet(14, 3 << 16, Buffer.from('user\0\0')), kind: 'invalid' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const p = parseFirstPacket(c.buf);
      assert.equal(p.kind, c.kind);
      if (c.reason !== undefined && p.kind === 'invalid') assert.match(p.reason, c.reason);
    });
  }

  it('reads the startup parameters', () => {
    const p = parseFirstPacket(startup);
    assert.equal(p.kind, 'startup');
    if (p.kind === 'startup') {
      assert.deepEqual(p.parameters, { user: 'postgres', database: 'db', application_name: 'x' });
      assert.deepEqual(p.protocol, { major: 3, minor: 0 });
    }
  });

  it('never throws and never asks for more than the startup bound, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const buf = Buffer.from(bytes);
        const p = parseFirstPacket(buf);
        if (p.kind === 'incomplete' && buf.length >= 4) assert.ok(buf.readUInt32BE(0) <= MAX_STARTUP_PACKET_BYTES);
        refusalStep(buf);
      }),
      { numRuns: 2000 },
    );
    for (let i = 0; i < 200; i++) parseFirstPacket(randomBytes(1 + (i % 64)));
  });
});

describe('refusal handshake', () => {
  it('declines encryption, then answers the startup packet with the error', () => {
    const ssl = encodeEncryptionRequest();
    assert.deepEqual(refusalStep(ssl), { action: 'decline-encryption', consumed: 8 });
    assert.deepEqual(refusalStep(encodeStartupMessage({ user: 'u' })), { action: 'send-error' });
    assert.deepEqual(refusalStep(Buffer.alloc(3)), { action: 'wait' });
    assert.equal(refusalStep(Buffer.from('garbage!garbage!')).action, 'close');
  });
});

describe('encodeErrorResponse', () => {
  it('encodes severity, SQLSTATE and message the way libpq reads them', () => {
    const buf = encodeErrorResponse({ severity: 'FATAL', code: '57P03', message: 'warden router: no primary available for cluster demo after 30 s' });
    assert.equal(buf.toString('ascii', 0, 1), 'E');
    assert.equal(buf.readUInt32BE(1), buf.length - 1);
    assert.equal(buf.at(-1), 0);
    assert.deepEqual(decodeErrorResponse(buf), { S: 'FATAL', V: 'FATAL', C: '57P03', M: 'warden router: no primary available for cluster demo after 30 s' });
  });

  it('carries detail and hint, UTF-8, and strips NUL bytes that would cut a field', () => {
    const buf = encodeErrorResponse({ severity: 'ERROR', code: '53300', message: 'été\0x', detail: 'd', hint: 'h' });
    assert.deepEqual(decodeErrorResponse(buf), { S: 'ERROR', V: 'ERROR', C: '53300', M: 'étéx', D: 'd', H: 'h' });
  });
});

describe('the startup-packet parser under fuzzing (fast-check)', () => {
  it('never throws and classifies every buffer, however hostile', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const buf = Buffer.from(bytes);
        const p = parseFirstPacket(buf);
        assert.ok(['incomplete', 'ssl-request', 'gssenc-request', 'cancel-request', 'startup', 'invalid'].includes(p.kind));
        refusalStep(buf);
      }),
      { numRuns: 20_000 },
    );
  });

  it('reads back every well-formed startup message, whole or cut anywhere', () => {
    const key = fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !k.includes('\u0000'));
    const value = fc.string({ maxLength: 40 }).filter((v) => !v.includes('\u0000'));
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 6 }), fc.nat(), (params, cut) => {
        const msg = encodeStartupMessage({ user: 'u', ...params });
        const whole = parseFirstPacket(msg);
        assert.equal(whole.kind, 'startup');
        const at = cut % msg.length;
        assert.equal(parseFirstPacket(msg.subarray(0, at)).kind, 'incomplete');
      }),
      { numRuns: 3_000 },
    );
  });
});
