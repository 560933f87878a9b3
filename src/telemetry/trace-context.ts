import { randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** `tracing`: W3C Trace Context (traceparent / tracestate) through the gateway. */
export interface TracingSettings {
  /** Continue a client's trace (its valid `traceparent`); false: every request starts a new one. */
  readonly trustIncoming: boolean;
  /** The `sampled` flag of the traces gatehouse starts. */
  readonly sampled: boolean;
}

/** The trace a request belongs to, as it goes upstream. */
export interface RequestTrace {
  /** 32 lowercase hex digits: in the access log as `trace_id`. */
  readonly traceId: string;
  /** The `traceparent` sent upstream (version 00). */
  readonly traceparent: string;
  /** The client's `tracestate`, when its trace is continued; null otherwise. */
  readonly tracestate: string | null;
}

const HEX = /^[0-9a-f]+$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_PARENT = '0000000000000000';
/** W3C Trace Context §3.3.1.1: vendors must propagate at least 512 characters; a longer one is dropped whole. */
const MAX_TRACESTATE = 512;

/**
 * A client's `traceparent` (W3C Trace Context §3.2), or null when it is absent or not valid:
 * version `00` as 55 characters, a later version (not `ff`) read by its first four fields;
 * lowercase hex only, neither id all zeros, exactly one header.
 *
 * @example
 * ```ts
 * parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
 * // { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: '01' }
 * ```
 */
export function parseTraceparent(value: string | string[] | undefined): { traceId: string; parentId: string; flags: string } | null {
  if (typeof value !== 'string') return null;
  const length = value.length;
  if (length < 55) return null;
  const version = value.slice(0, 2);
  if (!HEX.test(version) || version === 'ff') return null;
  // Version 00 is exactly 55 characters; a later version may add fields after a dash.
  if (version === '00' ? length !== 55 : length > 55 && value.charCodeAt(55) !== 0x2d) return null;
  if (value.charCodeAt(2) !== 0x2d || value.charCodeAt(35) !== 0x2d || value.charCodeAt(52) !== 0x2d) return null;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!HEX.test(traceId) || !HEX.test(parentId) || !HEX.test(flags)) return null;
  if (traceId === ZERO_TRACE || parentId === ZERO_PARENT) return null;
  return { traceId, parentId, flags };
}

// Random ids from a pool filled 4 KiB at a time: one `randomFillSync` per 170 requests.
const POOL = Buffer.alloc(4080);
let offset = POOL.length;

function randomHex(bytes: number): string {
  if (offset + bytes > POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const hex = POOL.toString('hex', offset, offset + bytes);
  offset += bytes;
  return hex;
}

/** A new trace id (16 random bytes, never all zeros) and parent id (8). */
function newIds(): { traceId: string; parentId: string } {
  let traceId = randomHex(16);
  while (traceId === ZERO_TRACE) traceId = randomHex(16);
  let parentId = randomHex(8);
  while (parentId === ZERO_PARENT) parentId = randomHex(8);
  return { traceId, parentId };
}

/**
 * The trace of one request: the client's, continued (its trace id, parent id and flags, and its
 * `tracestate`), when it sent one valid `traceparent` and `trustIncoming` allows; else a new one.
 * gatehouse exports no spans of its own, so a continued trace keeps the client's parent id: the
 * upstream's span hangs under the client's, as if gatehouse were not there.
 *
 * @example
 * ```ts
 * const trace = requestTrace(req.headers, { trustIncoming: true, sampled: true });
 * headers.push('traceparent', trace.traceparent);
 * ```
 */
export function requestTrace(headers: IncomingHttpHeaders, settings: TracingSettings): RequestTrace {
  if (settings.trustIncoming) {
    const incoming = parseTraceparent(headers.traceparent);
    if (incoming !== null) {
      const state = headers.tracestate;
      const tracestate = typeof state === 'string' ? state : Array.isArray(state) ? state.join(',') : null;
      return {
        traceId: incoming.traceId,
        traceparent: `00-${incoming.traceId}-${incoming.parentId}-${incoming.flags}`,
        tracestate: tracestate !== null && tracestate.length > 0 && tracestate.length <= MAX_TRACESTATE && !/[\r\n]/.test(tracestate) ? tracestate : null,
      };
    }
  }
  const { traceId, parentId } = newIds();
  return { traceId, traceparent: `00-${traceId}-${parentId}-${settings.sampled ? '01' : '00'}`, tracestate: null };
}
