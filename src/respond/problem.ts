import type { ServerResponse } from 'node:http';
import http2, { type ServerHttp2Stream } from 'node:http2';
import type { GatehouseError } from '../errors.js';
import { bearerChallenge } from './www-authenticate.js';

/** The base of every problem `type` URI; docs/errors.md has one anchor per code. */
export const PROBLEM_TYPE_BASE = 'https://gatehouse.dev/docs/errors#';

/**
 * The RFC 9457 body for an error: says what class of failure it was, never echoes a token,
 * never exposes internals on a 5xx (`description` is the public text; `detail` stays in the log).
 *
 * @example
 * ```ts
 * problemBody(new InvalidToken('GH_ERR_JWT_EXPIRED', 'the access token has expired'), 'req-1');
 * ```
 */
export function problemBody(error: GatehouseError, requestId: string): string {
  return JSON.stringify({
    type: PROBLEM_TYPE_BASE + error.code.toLowerCase(),
    title: error.title,
    status: error.status,
    detail: error.description,
    instance: `urn:gatehouse:request:${requestId}`,
    code: error.code,
  });
}

/**
 * Headers on every answer gatehouse writes itself — refusals, the token handler's JSON, the
 * admin endpoints' JSON: never stored by a cache, never read by a browser as another type than
 * the one declared (OWASP REST security headers). One list, so no writer of its own answers
 * goes without one of them.
 */
export const OWN_ANSWER_HEADERS: readonly (readonly [string, string])[] = [
  ['cache-control', 'no-store'],
  ['x-content-type-options', 'nosniff'],
];

/** A response writer that both node:http and the HTTP/2 compat API satisfy. */
export type WritableResponse = Pick<
  ServerResponse,
  'headersSent' | 'writableEnded' | 'setHeader' | 'writeHead' | 'end' | 'destroy' | 'getHeaderNames' | 'removeHeader'
>;

/**
 * Marks an HTTP/2 stream that gatehouse reset itself (a broken-off answer, a stalled client):
 * the rapid-reset guard (server/tls.ts) counts only the resets the client caused.
 */
export const OWN_RESET = Symbol('gatehouse.ownReset');

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;

/**
 * Break off a response whose head is already out, so the client cannot take what it got for the
 * whole answer. HTTP/1.1: the connection is cut before the end of the body (no terminating
 * chunk, or short of `content-length`). HTTP/2: the stream is reset with `INTERNAL_ERROR`
 * (RFC 9113 §5.4.2) — `destroy()` without an error would reset it with `NO_ERROR`, which a
 * client reads as a complete answer.
 *
 * @example
 * ```ts
 * if (res.headersSent) abortResponse(res);
 * ```
 */
export function abortResponse(res: Pick<ServerResponse, 'destroy'>): void {
  const stream = (res as { stream?: ServerHttp2Stream & { [OWN_RESET]?: true } }).stream;
  if (stream === undefined) {
    res.destroy();
    return;
  }
  if (stream.destroyed) return;
  stream[OWN_RESET] = true;
  stream.close(NGHTTP2_INTERNAL_ERROR);
}

/**
 * Write an error as problem+json with its challenge and extra headers. If the response head is
 * already out (the upstream answered, then failed), the only honest thing left is to break the
 * answer off ({@link abortResponse}).
 */
export function sendProblem(
  res: WritableResponse,
  error: GatehouseError,
  requestId: string,
  realm: string,
  extraHeaders: readonly [string, string][] = [],
  method = 'GET',
  dpopAlgs: string | null = null,
): void {
  if (res.headersSent) {
    if (!res.writableEnded) abortResponse(res);
    return;
  }
  // Drop whatever was staged on the response (content-length, …): the answer's headers are
  // the ones below, and the caller's (HSTS, RateLimit, CORS) come in `extraHeaders`.
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  const body = problemBody(error, requestId);
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
  };
  for (const [k, v] of OWN_ANSWER_HEADERS) headers[k] = v;
  const challenge = bearerChallenge(error, realm, dpopAlgs);
  if (challenge) headers['www-authenticate'] = challenge;
  if (error.headers) for (const k in error.headers) headers[k] = error.headers[k]!;
  for (const [k, v] of extraHeaders) headers[k] = v;
  res.writeHead(error.status, headers);
  res.end(method === 'HEAD' ? undefined : body);
}
