import type { ServerResponse } from 'node:http';
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
 * Write an error as problem+json with its challenge and extra headers. If the response head is
 * already out (the upstream answered, then failed), the only honest thing left is to cut the
 * connection.
 */
export function sendProblem(
  res: WritableResponse,
  error: GatehouseError,
  requestId: string,
  realm: string,
  extraHeaders: readonly [string, string][] = [],
  method = 'GET',
): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.destroy();
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
  const challenge = bearerChallenge(error, realm);
  if (challenge) headers['www-authenticate'] = challenge;
  if (error.headers) for (const k in error.headers) headers[k] = error.headers[k]!;
  for (const [k, v] of extraHeaders) headers[k] = v;
  res.writeHead(error.status, headers);
  res.end(method === 'HEAD' ? undefined : body);
}
