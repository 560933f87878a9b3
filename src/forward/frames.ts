/**
 * Where the frames of one direction of a WebSocket connection begin and end (RFC 6455 §5.2),
 * read from their headers only — payloads are skipped by their length, never copied or
 * unmasked. The tunnel needs two things from it: whether the bytes forwarded so far end on a
 * frame boundary (the one place a close frame of gatehouse's own can go, §5.4: control frames
 * may come between the fragments of a message), and the size of the message a frame adds to,
 * against the route's `websocket.maxMessageSize`.
 */

import { randomBytes } from 'node:crypto';

/** What {@link FrameCursor.feed} found. */
export const FRAMES_OK = -1;

export class FrameCursor {
  /** Header bytes of the frame being read (at most 14: 2 + 8 length + 4 mask). */
  private readonly header = Buffer.alloc(14);
  /** Header bytes collected so far (0: at a frame's start, or inside its payload). */
  private have = 0;
  /** Header bytes this frame's header takes (known once its second byte is in). */
  private need = 2;
  /** Payload bytes of the current frame not yet seen. */
  private remaining = 0;
  /** Payload bytes of the data message under way (its fragments so far). */
  private message = 0;
  /** A refused frame had part of its header forwarded already: the stream is not on a boundary any more. */
  private cut = false;
  /** Why the last refused frame was refused: over `maxMessage`, over the message rate, or a length no number holds. */
  refusal: 'size' | 'rate' | 'length' | null = null;
  /** The rate bucket: frames that may still start now, and when it was last filled (ms). */
  private tokens: number;
  private filledAt = 0;

  /**
   * @param maxMessage the largest data message (payload bytes over its fragments); Infinity for none.
   * @param maxRate frames a second that start a message or are control frames (continuations do
   *   not count), with as many at once; Infinity for none.
   * @param now the clock the rate is counted by (ms).
   */
  constructor(
    private readonly maxMessage: number,
    private readonly maxRate = Infinity,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = maxRate;
  }

  /** The bytes fed so far end exactly between two frames. */
  atBoundary(): boolean {
    return this.have === 0 && this.remaining === 0 && !this.cut;
  }

  /**
   * Read `chunk`'s frame headers. Returns {@link FRAMES_OK}, or the offset in `chunk` where a
   * frame starts that must not go on: one that takes its message over `maxMessage`, or one whose
   * 64-bit length no JavaScript number holds. Bytes before that offset are whole frames.
   */
  feed(chunk: Buffer): number {
    let i = 0;
    const n = chunk.length;
    // Where the frame being read began in this chunk (negative: in an earlier one).
    let start = -this.have;
    while (i < n) {
      if (this.remaining > 0) {
        const skip = Math.min(this.remaining, n - i);
        this.remaining -= skip;
        i += skip;
        continue;
      }
      if (this.have === 0) start = i;
      // Collect the header byte by byte (it is at most 14 bytes, and nearly always in one chunk).
      this.header[this.have++] = chunk[i++]!;
      if (this.have === 2) {
        const len7 = this.header[1]! & 0x7f;
        this.need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.header[1]! & 0x80 ? 4 : 0);
      }
      if (this.have < this.need) continue;
      const length = this.payloadLength();
      this.have = 0;
      this.need = 2;
      if (length < 0) return this.refuse(start, 'length');
      const opcode = this.header[0]! & 0x0f;
      if (opcode !== 0 && this.maxRate !== Infinity && !this.take()) return this.refuse(start, 'rate');
      if (opcode < 8) {
        // A data frame: a text or binary frame starts a message, a continuation adds to it.
        this.message = opcode === 0 ? this.message + length : length;
        if (this.message > this.maxMessage) return this.refuse(start, 'size');
      }
      this.remaining = length;
    }
    return FRAMES_OK;
  }

  private refuse(start: number, why: 'size' | 'rate' | 'length'): number {
    if (start < 0) this.cut = true;
    this.refusal = why;
    return Math.max(start, 0);
  }

  /** One frame from the rate bucket (refilled at `maxRate` a second, holding at most `maxRate`). */
  private take(): boolean {
    const at = this.now();
    if (at > this.filledAt) {
      this.tokens = Math.min(this.maxRate, this.tokens + ((at - this.filledAt) * this.maxRate) / 1000);
      this.filledAt = at;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private payloadLength(): number {
    const h = this.header;
    const len7 = h[1]! & 0x7f;
    if (len7 < 126) return len7;
    if (len7 === 126) return (h[2]! << 8) | h[3]!;
    const high = h.readUInt32BE(2);
    // §5.2: the most significant bit must be 0; past 2^53 a number cannot count it.
    if (high > 0x1fffff) return -1;
    return high * 2 ** 32 + h.readUInt32BE(6);
  }
}

/**
 * A close frame (§5.5.1) with a status code and a short reason: unmasked from gatehouse to the
 * client, masked (§5.3) towards the upstream, as a client's frames must be.
 *
 * @example
 * ```ts
 * client.write(closeFrame(1008, 'token expired', false));
 * ```
 */
export function closeFrame(code: number, reason: string, masked: boolean, mask: Buffer | null = null): Buffer {
  const text = Buffer.from(reason.slice(0, 120), 'utf8').subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const key = mask ?? randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), key, payload]);
}
