import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * `Expect: 100-continue` (RFC 9110 §10.1.1): the client holds its body back until an interim
 * `100 Continue`. gatehouse sends it only once a request is granted, so a refused client never
 * uploads its body. The listener marks such a request ({@link holdForContinue}, from node's
 * `checkContinue` event); whoever is about to read the body sends the 100 ({@link sendContinue}):
 * the forwarder, and gatehouse's own handlers that read a body (the token-handler agent).
 */

const EXPECTS_CONTINUE = Symbol('gatehouse.expectsContinue');
type HeldRequest = IncomingMessage & { [EXPECTS_CONTINUE]?: boolean };

/**
 * Mark a request whose client waits for `100 Continue` before it sends its body.
 *
 * @example
 * ```ts
 * server.on('checkContinue', function (req, res) { holdForContinue(req); this.emit('request', req, res); });
 * ```
 */
export function holdForContinue(req: IncomingMessage): void {
  (req as HeldRequest)[EXPECTS_CONTINUE] = true;
}

/**
 * Send the `100 Continue` a held request waits for, at most once. Call when the request is
 * granted and its body is about to be read; without it the client waits out its own timeout
 * first. Costs one property read for a request that is not held.
 *
 * @example
 * ```ts
 * sendContinue(req, res);
 * for await (const chunk of req) consume(chunk);
 * ```
 */
export function sendContinue(req: IncomingMessage, res: ServerResponse): void {
  const held = req as HeldRequest;
  if (held[EXPECTS_CONTINUE] !== true) return;
  held[EXPECTS_CONTINUE] = false;
  res.writeContinue();
}
