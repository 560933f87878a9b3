import type { IncomingMessage } from 'node:http';
import { RequestRejected } from '../errors.js';
import { hostProblem } from './host.js';

/**
 * The request head's framing and Host, checked before anything else reads them (after the
 * target, before the plaintext policy and routing): `Transfer-Encoding` other than `chunked`,
 * and a Host that is missing (HTTP/1.1), repeated, not `host[:port]` or unlike `:authority`.
 * Null for a head gatehouse takes; allocation-free then.
 *
 * @example
 * ```ts
 * const denial = requestHeadProblem(req); // RequestRejected 400 GH_ERR_REQUEST_BAD_HOST, …
 * ```
 */
export function requestHeadProblem(req: IncomingMessage): RequestRejected | null {
  // Only `chunked` is a transfer coding gatehouse decodes (node's parser refuses a list that
  // does not end in it). `gzip, chunked` would reach the upstream de-chunked but still
  // compressed, with nothing saying so: refused, as is any other list (RFC 9112 §6.1).
  const transferEncoding = req.headers['transfer-encoding'];
  if (transferEncoding !== undefined && transferEncoding !== 'chunked' && transferEncoding.trim().toLowerCase() !== 'chunked') {
    return new RequestRejected('GH_ERR_REQUEST_BAD_HEADER', 400, 'the request could not be parsed', { detail: `transfer-encoding other than chunked: ${transferEncoding.slice(0, 64)}` });
  }
  const badHost = hostProblem(req.rawHeaders, req.headers.host, req.httpVersionMinor === 1 && req.httpVersionMajor === 1, req.headers[':authority'] as string | undefined);
  if (badHost === null) return null;
  return new RequestRejected('GH_ERR_REQUEST_BAD_HOST', 400, 'the Host header is missing, repeated or not a host', { detail: badHost });
}
