import { describe, expect, it } from 'vitest';
import { closeFrame, FrameCursor, FRAMES_OK } from '../../src/forward/frames.js';

/** A frame as a client (masked) or a server (unmasked) writes it (RFC 6455 §5.2). */
function frame(opcode: number, payload: Buffer, { fin = true, masked = true } = {}): Buffer {
  const n = payload.length;
  const head: number[] = [(fin ? 0x80 : 0) | opcode];
  const maskBit = masked ? 0x80 : 0;
  if (n < 126) head.push(maskBit | n);
  else if (n < 65536) head.push(maskBit | 126, n >> 8, n & 0xff);
  else head.push(maskBit | 127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  const key = masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0);
  const body = Buffer.from(payload);
  if (masked) for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from(head), key, body]);
}

const text = (n: number, options?: { fin?: boolean; masked?: boolean }) => frame(1, Buffer.alloc(n, 0x61), options);

describe('FrameCursor', () => {
  it('knows the boundaries of 7-, 16- and 64-bit lengths, masked or not, whatever the chunking', () => {
    const stream = Buffer.concat([text(5), text(300), frame(2, Buffer.alloc(70_000)), text(0, { masked: false }), frame(9, Buffer.from('ping'))]);
    for (const size of [1, 2, 3, 7, 13, 64, 1000, stream.length]) {
      const cursor = new FrameCursor(Infinity);
      for (let i = 0; i < stream.length; i += size) {
        expect(cursor.feed(stream.subarray(i, i + size))).toBe(FRAMES_OK);
      }
      expect(cursor.atBoundary()).toBe(true);
    }
  });

  it('is not on a boundary inside a header or a payload', () => {
    const cursor = new FrameCursor(Infinity);
    const f = text(10);
    cursor.feed(f.subarray(0, 1));
    expect(cursor.atBoundary()).toBe(false);
    cursor.feed(f.subarray(1, 8));
    expect(cursor.atBoundary()).toBe(false);
    cursor.feed(f.subarray(8));
    expect(cursor.atBoundary()).toBe(true);
  });

  it('refuses the frame that takes a message over the limit, at the offset where that frame starts', () => {
    const cursor = new FrameCursor(100);
    const ok = text(100);
    const big = text(101);
    expect(cursor.feed(Buffer.concat([ok, big]))).toBe(ok.length);
    expect(cursor.atBoundary()).toBe(true);
  });

  it('adds fragments up, and a control frame between them counts for nothing', () => {
    const cursor = new FrameCursor(100);
    const parts = [text(40, { fin: false }), frame(9, Buffer.alloc(100)), frame(0, Buffer.alloc(40), { fin: false })];
    expect(cursor.feed(Buffer.concat(parts))).toBe(FRAMES_OK);
    const last = frame(0, Buffer.alloc(21));
    expect(cursor.feed(last)).toBe(0);
    // a new message starts from nothing
    const fresh = new FrameCursor(100);
    expect(fresh.feed(Buffer.concat([text(90), text(90), text(90)]))).toBe(FRAMES_OK);
  });

  it('refuses a 64-bit length no number holds (its most significant bits set)', () => {
    const cursor = new FrameCursor(Infinity);
    const header = Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
    expect(cursor.feed(Buffer.concat([text(3), header]))).toBe(text(3).length);
  });

  it('a refused frame whose header began in an earlier chunk leaves the stream off a boundary', () => {
    const cursor = new FrameCursor(10);
    const big = text(20);
    expect(cursor.feed(big.subarray(0, 1))).toBe(FRAMES_OK);
    expect(cursor.feed(big.subarray(1))).toBe(0);
    expect(cursor.atBoundary()).toBe(false);
  });
});

describe('closeFrame', () => {
  it('is an unmasked close frame with the code and reason for the client', () => {
    const f = closeFrame(1008, 'token expired', false);
    expect([...f.subarray(0, 4)]).toEqual([0x88, 15, 0x03, 0xf0]);
    expect(f.subarray(4).toString()).toBe('token expired');
  });

  it('is masked towards the upstream, and unmasks to the same payload', () => {
    const key = Buffer.from([9, 8, 7, 6]);
    const f = closeFrame(1001, 'going away', true, key);
    expect(f[0]).toBe(0x88);
    expect(f[1]).toBe(0x80 | 12);
    expect([...f.subarray(2, 6)]).toEqual([...key]);
    const payload = Buffer.from(f.subarray(6));
    for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
    expect(payload.readUInt16BE(0)).toBe(1001);
    expect(payload.subarray(2).toString()).toBe('going away');
    const cursor = new FrameCursor(Infinity);
    expect(cursor.feed(f)).toBe(FRAMES_OK);
    expect(cursor.atBoundary()).toBe(true);
  });

  it('keeps the payload within a control frame\'s 125 bytes', () => {
    expect(closeFrame(1001, 'x'.repeat(500), false).length).toBeLessThanOrEqual(127);
  });
});

describe('FrameCursor message rate', () => {
  /** A masked client frame: opcode, fin, payload length (payload zeros). */
  const frame = (opcode: number, fin = true, length = 1) => Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | length, 1, 2, 3, 4]), Buffer.alloc(length)]);

  it('refuses the frame past the bucket, at its offset, and says why', () => {
    const now = 1_000;
    const cursor = new FrameCursor(Infinity, 3, () => now);
    const four = Buffer.concat([frame(1), frame(2), frame(9), frame(1)]);
    expect(cursor.feed(four)).toBe(3 * frame(1).length);
    expect(cursor.refusal).toBe('rate');
    // Without a rate, no frame is refused for it.
    const unbounded = new FrameCursor(Infinity);
    for (let i = 0; i < 1000; i++) expect(unbounded.feed(frame(1))).toBe(-1);
  });

  it('refills at the rate: a steady sender at the rate is never refused', () => {
    let now = 0;
    const cursor = new FrameCursor(Infinity, 10, () => now);
    for (let i = 0; i < 100; i++) {
      expect(cursor.feed(frame(1))).toBe(-1);
      now += 100;
    }
  });

  it('counts a fragmented message once (continuations are free), control frames each', () => {
    const cursor = new FrameCursor(Infinity, 2, () => 5_000);
    expect(cursor.feed(Buffer.concat([frame(1, false), frame(0, false), frame(0, false), frame(0, true)]))).toBe(-1);
    expect(cursor.feed(frame(10))).toBe(-1);
    expect(cursor.feed(frame(9))).toBe(0);
    expect(cursor.refusal).toBe('rate');
  });
});
