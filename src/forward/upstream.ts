import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { ValidateFunction } from 'ajv';
import type { Logger } from 'pino';
import { Pool, type Dispatcher } from 'undici';
import type { GatehouseConfig, UpstreamConfig } from '../config/types.js';
import { RequestRejected, UpstreamFailed, type GatehouseError } from '../errors.js';
import type { GatewayServices } from '../pipeline/runtime.js';
import { abortResponse } from '../respond/problem.js';
import { connectionTokens, dropCorsHeaders, isHopByHopResponseHeader, publicLocation, upstreamSetCookies, type UpstreamHeaderOptions } from './headers.js';
import { clientTlsOptions, isOutboundTimeout } from './outbound.js';
import { namesWebSocket, type WebSocketForward } from './tunnel.js';
import { startHealthChecks, type HealthChecks } from './health-check.js';
import { answerHasNoBody, responseBodyProblem, responseHeadProblem, responseValidator, type ResponseCheck } from '../validate/response-body.js';

/**
 * One upstream: its targets (one undici `Pool` each: keep-alive, bounded connections) and its
 * base path. An upstream configured with `url` has one target; with `targets`, requests go
 * round robin over those that are up, and a target that cannot be reached is left out for
 * `downFor` (its requests retried on another, see {@link ForwardHandler}).
 *
 * @example
 * ```ts
 * const upstream = createUpstream(config.upstreams[0], config, services);
 * ```
 */
export interface Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  /** Every instance, in the order configured (at most 32). */
  readonly targets: readonly UpstreamTarget[];
  /** The URL's path without a trailing slash ('' for '/'); the same for every target. */
  readonly basePath: string;
  /** The forwarding headers it gets (`upstreams[].forwardedHeaders`), as flags read per request. */
  readonly sends: ForwardedFlags;
  /** The gateway's logger: exchanges cut off for a stalled client are logged at `warn`. */
  readonly log: Logger;
  /** The round robin's next index. */
  cursor: number;
  /** Some target has a weight other than 1 (`{ url, weight }`): the round robin is weighted. */
  readonly weighted: boolean;
  /** A target could not be reached: leave it out for `downFor` (logged and counted when it was up). */
  markDown(target: UpstreamTarget, reason: string): void;
  /** A target answered: back in the rotation (logged when it was down), unless its health checks fail. */
  markUp(target: UpstreamTarget): void;
  /** `healthCheck`: a target failed `unhealthyAfter` probes in a row, or passed `healthyAfter` after that. */
  setFailing(target: UpstreamTarget, failing: boolean, reason: string): void;
  /** Start the active health checks (`upstreams[].healthCheck`), if any; `close` stops them. */
  start(): void;
  /** `responseBody`: an answer that did not match its route's contract, refused or (onInvalid: log) passed on. */
  answerInvalid(route: string, action: 'refused' | 'passed'): void;
  close(): Promise<void>;
}

/** One instance of an upstream. */
export interface UpstreamTarget {
  /** Its position in `targets` (a bit in a request's set of tried targets). */
  readonly index: number;
  /** As configured, for logs and metrics. */
  readonly url: string;
  /** Its share of the requests (`{ url, weight }`, 1 by default; 0: drained, sent nothing). */
  readonly weight: number;
  /** The weighted round robin's running score (smooth weighted round robin). */
  current: number;
  /** `http://host:port`: undici writes the `Host` header from it, so each target gets its own. */
  readonly origin: string;
  readonly pool: Dispatcher;
  /** ms since epoch until which the round robin passes it by; 0 while it is up. */
  downUntil: number;
  /** Left out by its health checks (`upstreams[].healthCheck`) until they pass again: `downUntil` is then the end of time. */
  failing: boolean;
}

/** `upstreams[].forwardedHeaders` as one flag per header. */
export interface ForwardedFlags {
  readonly xForwardedFor: boolean;
  readonly xForwardedProto: boolean;
  readonly xForwardedHost: boolean;
  readonly forwarded: boolean;
  /** RFC 9440 `Client-Cert` (only when listed). */
  readonly clientCert: boolean;
}

/** Per `gatehouse_upstream_target_up` gauge: which plan's upstream last set each series (by its target list). */
const gaugeOwners = new WeakMap<object, Map<string, readonly UpstreamTarget[]>>();

export function createUpstream(config: UpstreamConfig, gateway: GatehouseConfig, services: GatewayServices): Upstream {
  const first = new URL(config.url);
  const tls = first.protocol === 'https:' ? clientTlsOptions(config.tls, gateway.baseDir) : undefined;
  const targetList = config.targets && config.targets.length > 0 ? config.targets : [config.url];
  const targets = targetList.map((target, index): UpstreamTarget => {
    const url = new URL(target);
    const pool = new Pool(url.origin, {
      connections: config.connections,
      pipelining: 1,
      keepAliveTimeout: config.keepAliveTimeout,
      connectTimeout: config.connectTimeout,
      headersTimeout: config.timeout,
      bodyTimeout: config.timeout,
      // Certificates and host names are always verified: there is no switch to turn that off.
      connect: tls,
    });
    return { index, url: target, weight: config.weights?.[index] ?? 1, current: 0, origin: url.origin, pool, downUntil: 0, failing: false };
  });
  const basePath = first.pathname === '/' ? '' : first.pathname.replace(/\/$/, '');
  const up = services.metrics.gauge('gatehouse_upstream_target_up', 'Whether an upstream target is in the rotation (1) or left out (0): it could not be reached, or it fails its health checks.', ['upstream', 'target'], 'min');
  const failures = services.metrics.counter('gatehouse_upstream_connect_failures_total', 'Connections to an upstream target that could not be made (refused, timed out, TLS), by upstream and target.', ['upstream', 'target']);
  let owners = gaugeOwners.get(up);
  if (owners === undefined) gaugeOwners.set(up, (owners = new Map()));
  for (const target of targets) {
    up.set({ upstream: config.name, target: target.url }, 1);
    owners.set(`${config.name}\u0000${target.url}`, targets);
  }
  const invalidAnswers = services.metrics.counter(
    'gatehouse_upstream_answers_invalid_total',
    "Answers that did not match their route's responseBody, by route and what gatehouse did: refused (502) or passed (onInvalid: log).",
    ['route', 'action'],
  );
  const downFor = config.downFor ?? 10_000;
  const log = services.log;
  let checks: HealthChecks | null = null;
  return {
    name: config.name,
    config,
    targets,
    basePath,
    sends: {
      xForwardedFor: config.forwardedHeaders.includes('x-forwarded-for'),
      xForwardedProto: config.forwardedHeaders.includes('x-forwarded-proto'),
      xForwardedHost: config.forwardedHeaders.includes('x-forwarded-host'),
      forwarded: config.forwardedHeaders.includes('forwarded'),
      clientCert: config.forwardedHeaders.includes('client-cert'),
    },
    log,
    cursor: 0,
    weighted: targets.some((t) => t.weight !== 1),
    markDown(target, reason) {
      failures.inc({ upstream: config.name, target: target.url });
      // Out until its health checks pass: a failed connection does not shorten that.
      if (target.failing) return;
      const now = Date.now();
      const wasUp = target.downUntil === 0;
      target.downUntil = now + downFor;
      if (!wasUp) return;
      up.set({ upstream: config.name, target: target.url }, 0);
      log.warn(
        { upstream: config.name, target: target.url, error: reason, down_for_ms: downFor, targets_up: targets.filter((t) => t.downUntil <= now).length },
        targets.length > 1 ? 'upstream target unreachable; left out of the rotation' : 'upstream unreachable',
      );
    },
    markUp(target) {
      // An answer to a request sent while every target was out does not overrule failing health checks.
      if (target.failing) return;
      target.downUntil = 0;
      up.set({ upstream: config.name, target: target.url }, 1);
      log.info({ upstream: config.name, target: target.url }, targets.length > 1 ? 'upstream target reachable again; back in the rotation' : 'upstream reachable again');
    },
    setFailing(target, failing, reason) {
      if (target.failing === failing) return;
      target.failing = failing;
      const fields = { upstream: config.name, target: target.url, health_check: config.healthCheck?.path, result: reason };
      if (failing) {
        target.downUntil = Number.MAX_SAFE_INTEGER;
        up.set({ upstream: config.name, target: target.url }, 0);
        const now = Date.now();
        log.warn({ ...fields, targets_up: targets.filter((t) => t.downUntil <= now).length }, targets.length > 1 ? 'upstream target failing its health checks; left out of the rotation' : 'upstream failing its health checks');
      } else {
        target.downUntil = 0;
        up.set({ upstream: config.name, target: target.url }, 1);
        log.info(fields, targets.length > 1 ? 'upstream target passing its health checks again; back in the rotation' : 'upstream passing its health checks again');
      }
    },
    start() {
      if (config.healthCheck && checks === null) checks = startHealthChecks(this, config.healthCheck);
    },
    answerInvalid(route, action) {
      invalidAnswers.inc({ route, action });
    },
    async close() {
      checks?.stop();
      // A target a reload removed leaves the gauge; one the new plan kept is the new plan's now.
      for (const target of targets) {
        const key = `${config.name}\u0000${target.url}`;
        if (owners.get(key) !== targets) continue;
        owners.delete(key);
        up.remove({ upstream: config.name, target: target.url });
      }
      await Promise.all(targets.map((t) => t.pool.close().catch(() => undefined)));
    },
  };
}

/**
 * The target for a request's next try: round robin over the targets that are up and not yet
 * tried (`tried`: a bit per target index). On the first try, when every target is left out,
 * the round robin goes over all of them (one may be back; refusing outright would turn a
 * network blip into an outage); a retry goes only to a target that is up. Null: none left.
 *
 * @example
 * ```ts
 * const target = pickTarget(upstream, 0, Date.now())!; // the first try
 * ```
 */
export function pickTarget(upstream: Upstream, tried: number, now: number): UpstreamTarget | null {
  const targets = upstream.targets;
  const n = targets.length;
  if (n === 1) return tried === 0 ? targets[0]! : null;
  if (upstream.weighted) return pickWeighted(upstream, tried, now);
  let start = upstream.cursor;
  if (start >= n) start = 0;
  let fallback: UpstreamTarget | null = null;
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n;
    if ((tried & (1 << i)) !== 0) continue;
    const target = targets[i]!;
    if (target.downUntil === 0 || target.downUntil <= now) {
      upstream.cursor = i + 1;
      return target;
    }
    if (fallback === null) fallback = target;
  }
  if (tried !== 0 || fallback === null) return null;
  upstream.cursor = fallback.index + 1;
  return fallback;
}

/**
 * Smooth weighted round robin (as nginx's): each eligible target — up, not yet tried, weight
 * above 0 — adds its weight to its score, the highest score is picked and loses the sum of the
 * weights. Weights 3 and 1 give a a b a · a a b a: each target its share in every cycle, spread
 * out rather than in runs. A drained target (weight 0) is never picked. With every weighted
 * target left out, a first try goes round robin over them as the unweighted one does.
 */
function pickWeighted(upstream: Upstream, tried: number, now: number): UpstreamTarget | null {
  const targets = upstream.targets;
  const n = targets.length;
  let best: UpstreamTarget | null = null;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const target = targets[i]!;
    if (target.weight === 0 || (tried & (1 << i)) !== 0) continue;
    if (target.downUntil !== 0 && target.downUntil > now) continue;
    target.current += target.weight;
    total += target.weight;
    if (best === null || target.current > best.current) best = target;
  }
  if (best !== null) {
    best.current -= total;
    return best;
  }
  if (tried !== 0) return null;
  for (let k = 0; k < n; k++) {
    const i = (upstream.cursor + k) % n;
    if (targets[i]!.weight === 0) continue;
    upstream.cursor = i + 1;
    return targets[i]!;
  }
  return null;
}

export interface ForwardRequest {
  method: string;
  path: string;
  headers: string[];
  /** The client's request stream, or null when it carries no body. */
  body: IncomingMessage | null;
  /**
   * The body already read whole (a route's `requestBody` checked it): sent as these bytes, so
   * the request can still go to another target when the first cannot be reached.
   */
  bodyBytes: Buffer | null;
  /** Bytes allowed in a streamed (chunked) body; content-length is checked before. */
  maxBodySize: number;
  timeout: number;
  /** The request id, sent back as `x-request-id` whatever the upstream says. */
  requestId: string;
  /** `securityHeaders` for this request: added to a final answer that lacks them; null: none. */
  answerDefaults: readonly [string, string][] | null;
  /**
   * Headers added to the response whatever the upstream says (HSTS, rate-limit, CORS): each
   * replaces the upstream's header of that name, except `vary`, which is merged. Names lowercase.
   */
  responseHeaders: readonly [string, string][];
  /**
   * Receives the upstream latency (ms to the response head) as soon as the head arrives: the one
   * place it is kept (a client that leaves has its access log written before `done` runs).
   */
  timing: { upstreamLatency: number | undefined; upstreamTarget?: string | undefined; readonly route?: { readonly name: string } | null };
  /**
   * The route's header rules (compiled once per route), for the answer too: an upstream
   * `Set-Cookie` under gatehouse's cookie prefixes is dropped and logged, and on a route whose
   * CORS gatehouse answers, so are the upstream's `Access-Control-*` headers.
   */
  headerOptions: UpstreamHeaderOptions;
  /** What a `stripPrefix` route took off the path ('' otherwise), put back on the upstream's `Location`. */
  strippedPrefix: string;
  /**
   * A WebSocket handshake on a `websocket` route (its place in the route's count taken): sent
   * with `Upgrade: websocket`, and a `101` answer joins the two sockets. Null for every other request.
   */
  websocket: WebSocketForward | null;
  /**
   * `routes[].responseBody`: the answers the route lets through. An answer with a schema is held
   * whole (up to its `maxSize`) and checked before any of it goes to the client. Null: streamed.
   */
  responseCheck: ResponseCheck | null;
}

/** An answer held to be checked (`responseBody`): its schema and its bytes so far; `refused` once it was. */
interface HeldAnswer {
  readonly check: ResponseCheck;
  readonly validate: ValidateFunction | null;
  readonly chunks: Buffer[];
  size: number;
  refused: boolean;
}

/** Called once when a forwarded exchange ends: `error` is null when the answer went through. */
export type ForwardDone<T> = (state: T, error: GatehouseError | null) => void;

/**
 * Dispatch one request to the upstream and stream the answer back into `res`; `done(state, …)`
 * is called once when the exchange is over (never throws into the caller). The caller's
 * `close` listener on `res` calls {@link clientClosed}, so a client that goes away aborts the
 * upstream request; an upstream that fails maps to 502/504.
 *
 * Hot path: undici's `dispatch` with one handler object per request (methods on the
 * prototype); the callback and its state replace a promise and a closure.
 *
 * @example
 * ```ts
 * dispatchForward(upstream, request, res, (state, error) => { if (error) answer(state, error); }, state);
 * ```
 */
export function dispatchForward<T>(upstream: Upstream, request: ForwardRequest, res: ServerResponse, done: ForwardDone<T>, state: T): void {
  const handler = new ForwardHandler(upstream, res, request, done as ForwardDone<unknown>, state);
  const targets = upstream.targets;
  handler.send(targets.length === 1 ? targets[0]! : pickTarget(upstream, 0, Date.now())!);
}

class BodyTooLarge extends Error {}

async function* limitBody(stream: IncomingMessage, max: number, handler: ForwardHandler): AsyncGenerator<Buffer> {
  // From here on the body is being read: this request cannot be sent again.
  handler.bodyStarted = true;
  let seen = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > max) {
      handler.bodyTooLarge = true;
      throw new BodyTooLarge('request body too large');
    }
    yield chunk;
  }
}

/**
 * Errors that mean no connection to the target was made, so nothing of the request left
 * gatehouse: refused, no route, no such host, the connect timeout, a TLS handshake that failed.
 * A reset or a closed socket is not among them: it can come after the request was written.
 */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Answered as 502 `GH_ERR_UPSTREAM_CONNECT`: no connection, or one that broke before an answer. */
const CONNECT_CODES = new Set([...UNREACHABLE_CODES, 'ECONNRESET', 'UND_ERR_SOCKET']);

/** A TLS handshake that failed: verification, host name, protocol version, no shared cipher. */
const TLS_HANDSHAKE_FAILURE = /certificate|self.signed|altnames|ERR_TLS|ERR_SSL_/i;

/** Methods a request may be sent twice with (RFC 9110 §9.2.2), when it has no body. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A connection that broke under a request: closed by the other side, reset, a broken pipe. */
const BROKEN_CONNECTION = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

function isUnreachable(err: Error): boolean {
  const code = (err as { code?: string }).code ?? '';
  return UNREACHABLE_CODES.has(code) || TLS_HANDSHAKE_FAILURE.test(`${err.message} ${code}`);
}

/** Maps an undici error to the gateway's answer. */
export function upstreamError(err: Error): GatehouseError {
  const code = (err as { code?: string }).code ?? '';
  const detail = `${err.name}: ${err.message}${code ? ` (${code})` : ''}`;
  if (isOutboundTimeout(err)) return new UpstreamFailed('GH_ERR_UPSTREAM_TIMEOUT', { detail, cause: err });
  if (CONNECT_CODES.has(code) || TLS_HANDSHAKE_FAILURE.test(detail)) {
    return new UpstreamFailed('GH_ERR_UPSTREAM_CONNECT', { detail, cause: err });
  }
  return new UpstreamFailed('GH_ERR_UPSTREAM_FAILED', { detail, cause: err });
}

/**
 * The response head as one flat `[name, value, …]` array: the upstream's headers without the
 * hop-by-hop ones and without those gatehouse sets (`x-request-id`, `extra`), then gatehouse's.
 * `vary` from `extra` is merged with the upstream's, never replacing it (a cache must see both).
 *
 * @example
 * ```ts
 * responseHead({ 'content-type': 'text/plain', connection: 'keep-alive' }, 'req-1', [['strict-transport-security', 'max-age=31536000']]);
 * // ['content-type', 'text/plain', 'x-request-id', 'req-1', 'strict-transport-security', 'max-age=31536000']
 * ```
 */
export function responseHead(
  headers: Record<string, string | string[] | undefined>,
  requestId: string,
  extra: readonly [string, string][],
  defaults: readonly [string, string][] | null = null,
): (string | string[])[] {
  const named = connectionTokens(headers.connection);
  const out: (string | string[])[] = [];
  let upstreamVary: string | string[] | undefined;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || name === 'x-request-id' || isHopByHopResponseHeader(name, named)) continue;
    if (extra.length !== 0 && setByGateway(extra, name)) {
      if (name === 'vary') upstreamVary = value;
      continue;
    }
    out.push(name, value);
  }
  out.push('x-request-id', requestId);
  // `securityHeaders`: where the upstream sent none of the name (the route's own rules were taken
  // out of the list when it was built). The upstream's headers object is read, never extended.
  if (defaults !== null) {
    for (let i = 0; i < defaults.length; i++) {
      const header = defaults[i]!;
      if (headers[header[0]] === undefined) out.push(header[0], header[1]);
    }
  }
  for (let i = 0; i < extra.length; i++) {
    const [name, value] = extra[i]!;
    if (name === 'vary' && upstreamVary !== undefined) {
      out.push(name, `${Array.isArray(upstreamVary) ? upstreamVary.join(', ') : upstreamVary}, ${value}`);
      upstreamVary = undefined;
    } else {
      out.push(name, value);
    }
  }
  return out;
}

function setByGateway(extra: readonly [string, string][], name: string): boolean {
  for (let i = 0; i < extra.length; i++) if (extra[i]![0] === name) return true;
  return false;
}

const HANDLER = Symbol('gatehouse.forward');
type WithHandler = ServerResponse & { [HANDLER]?: ForwardHandler };

/**
 * Call from the response's `close` listener (the caller's one listener per request): when the
 * client went away before the exchange ended, the upstream request is aborted.
 *
 * @example
 * ```ts
 * res.on('close', function () { clientClosed(this); });
 * ```
 */
export function clientClosed(res: ServerResponse): void {
  const handler = (res as WithHandler)[HANDLER];
  if (handler && !handler.finished && handler.controller && !handler.controller.aborted) handler.controller.abort(new Error('client disconnected'));
}

function onClientDrain(this: WithHandler): void {
  const handler = this[HANDLER];
  if (handler === undefined) return;
  // The deadline is off: its timer may still fire, and does nothing while not paused.
  handler.paused = false;
  handler.controller?.resume();
}

function onClientStalled(handler: ForwardHandler): void {
  handler.clientStalled();
}

// Hot path: one handler object per request, methods on the prototype, listeners module-level.
class ForwardHandler implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null;
  finished = false;
  /** Paused for the client's backpressure: the stall deadline is running. */
  paused = false;
  private readonly started: number;
  private drainWatched = false;
  /**
   * The client's write-side deadline, created at the first backpressure (most answers never
   * have one) and re-armed by each later pause. undici's body timeout does not run while the
   * exchange is paused, so without it a client that stops reading holds the upstream
   * connection for ever (one such client per pool connection starves the upstream).
   */
  private stall: NodeJS.Timeout | null = null;
  /** The client was cut off for not reading: the abort that follows is not an upstream failure. */
  private stalled = false;
  private status = 0;
  /** The response head, built when the upstream's arrives and written with the first body bytes. */
  private head: (string | string[])[] | null = null;
  /** The upstream's `content-length`, while the head is not written yet (-1: none given). */
  private length = -1;
  /** A whole body that came in one chunk: it goes out with the end, in one `res.end(chunk)`. */
  private whole: Buffer | null = null;
  bodyTooLarge = false;
  /** The request's body began to be read: it cannot be sent to another target. */
  bodyStarted = false;
  /** The upstream answered a WebSocket handshake with 101: the connection is the tunnel's now. */
  private upgraded = false;
  /** The target of the current try. */
  private target: UpstreamTarget | null = null;
  /** A bit per target index already tried for this request. */
  private tried = 0;
  /** Sent once more after its connection broke (`retryIdempotent`): never again. */
  private retried = false;
  /** `responseBody`: the answer held to be checked; null while an answer streams (nearly always). */
  private held: HeldAnswer | null = null;

  constructor(
    private readonly upstream: Upstream,
    private readonly res: ServerResponse,
    private readonly request: ForwardRequest,
    private readonly done: ForwardDone<unknown>,
    private readonly state: unknown,
  ) {
    this.started = performance.now();
    (res as WithHandler)[HANDLER] = this;
  }

  /** Send the request to `target` (the first try, or a retry after an unreachable target). */
  send(target: UpstreamTarget): void {
    this.target = target;
    this.tried |= 1 << target.index;
    // The access log names the instance when there is more than one.
    if (this.upstream.targets.length > 1) this.request.timing.upstreamTarget = target.url;
    this.controller = null;
    const request = this.request;
    let body: Dispatcher.DispatchOptions['body'] = null;
    // undici streams any async iterable body; the generator enforces the size limit on chunked bodies.
    if (request.bodyBytes != null) body = request.bodyBytes;
    else if (request.body !== null) body = limitBody(request.body, request.maxBodySize, this) as unknown as Dispatcher.DispatchOptions['body'];
    target.pool.dispatch(
      {
        origin: target.origin,
        path: this.upstream.basePath + request.path,
        method: request.method as Dispatcher.HttpMethod,
        headers: request.headers,
        body,
        headersTimeout: request.timeout,
        bodyTimeout: request.timeout,
        blocking: false,
        upgrade: request.websocket === null ? undefined : 'websocket',
      },
      this,
    );
  }

  /**
   * The target could not be reached: it leaves the rotation for `downFor`, and when nothing of
   * the request was sent (no byte of its body read, the client still there) the request goes
   * to another target that is up. True when it was sent again.
   */
  private retryElsewhere(err: Error): boolean {
    const target = this.target;
    if (target === null) return false;
    if (!isUnreachable(err)) return this.retryIdempotent(err);
    this.upstream.markDown(target, `${err.name}: ${err.message}`);
    if (this.bodyStarted || this.res.destroyed || this.status !== 0) return false;
    const next = pickTarget(this.upstream, this.tried, Date.now());
    if (next === null) return false;
    this.send(next);
    return true;
  }

  /**
   * `upstreams[].retryIdempotent`: a GET, HEAD or OPTIONS without a body whose connection broke
   * before any answer (a keep-alive connection the upstream closed as the request went out, a
   * reset) is sent once more — to another target that is up, else to the same one on a new
   * connection. Never a request with a body or another method, never after a timeout (the
   * upstream may still be at work), never twice.
   */
  private retryIdempotent(err: Error): boolean {
    if (this.retried || !this.upstream.config.retryIdempotent) return false;
    const request = this.request;
    if (request.body !== null || this.status !== 0 || this.res.destroyed || !IDEMPOTENT.has(request.method)) return false;
    if (!BROKEN_CONNECTION.has((err as { code?: string }).code ?? '')) return false;
    this.retried = true;
    this.upstream.log.info({ req_id: request.requestId, upstream: this.upstream.name, target: this.target!.url, error: `${err.name}: ${err.message}` }, 'upstream connection broke before an answer; idempotent request sent again');
    this.send(pickTarget(this.upstream, this.tried, Date.now()) ?? this.target!);
    return true;
  }

  private end(error: GatehouseError | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.stall !== null) clearTimeout(this.stall);
    // A handshake that did not become a connection gives its place on the route back.
    const websocket = this.request.websocket;
    if (websocket !== null && !this.upgraded) websocket.tunnels.release(websocket.route, websocket.client);
    this.done(this.state, error);
  }

  /**
   * `101 Switching Protocols` to a WebSocket handshake: the answer's head goes to the client as
   * the upstream sent it (less hop-by-hop headers and gatehouse's cookies, plus gatehouse's
   * own), then the two sockets are joined. The exchange ends here as a request (its access-log
   * line says 101); the connection lives on in the route's {@link Tunnels}.
   */
  onRequestUpgrade(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: Duplex): void {
    const websocket = this.request.websocket!;
    const res = this.res;
    const client = res.socket;
    if (this.target!.downUntil !== 0) this.upstream.markUp(this.target!);
    this.request.timing.upstreamLatency = performance.now() - this.started;
    if (client === null || client.destroyed || res.headersSent) {
      socket.destroy();
      this.end(null);
      return;
    }
    const switched = headers.upgrade;
    if (!namesWebSocket(typeof switched === 'string' ? switched : undefined)) {
      socket.destroy();
      this.end(new UpstreamFailed('GH_ERR_UPSTREAM_FAILED', { detail: `the upstream answered a WebSocket handshake with 101 and upgrade: ${String(switched).slice(0, 64)}` }));
      return;
    }
    const head = this.answerHead(headers);
    let text = `HTTP/1.1 ${statusCode} Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n`;
    for (let i = 0; i < head.length; i += 2) {
      const value = head[i + 1]!;
      if (Array.isArray(value)) for (const v of value) text += `${head[i] as string}: ${v}\r\n`;
      else text += `${head[i] as string}: ${value}\r\n`;
    }
    this.upgraded = true;
    res.detachSocket(client);
    res.statusCode = statusCode;
    client.write(`${text}\r\n`);
    websocket.tunnels.join(client, socket as Socket, websocket);
    this.end(null);
    // The request is over: the runner's `close` listener writes its access-log line and counts it out.
    res.emit('close');
  }

  /**
   * The client pushed back for the whole route `timeout` (the same bound as an idle upstream
   * body): abort the upstream exchange (undici closes or frees the connection) and break the
   * client's answer off.
   */
  clientStalled(): void {
    if (!this.paused || this.finished) return;
    this.stalled = true;
    this.upstream.log.warn(
      { req_id: this.request.requestId, upstream: this.upstream.name, timeout_ms: this.request.timeout },
      'client stopped reading the answer; upstream exchange aborted',
    );
    abortResponse(this.res);
    if (this.controller !== null && !this.controller.aborted) this.controller.abort(new Error('client stopped reading'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new Error('client disconnected'));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.target!.downUntil !== 0) this.upstream.markUp(this.target!);
    if (statusCode < 200) return; // 1xx: wait for the final answer
    this.request.timing.upstreamLatency = performance.now() - this.started;
    this.status = statusCode;
    this.head = this.answerHead(headers, this.request.answerDefaults);
    const length = headers['content-length'];
    this.length = typeof length === 'string' ? Number(length) : -1;
    const check = this.request.responseCheck;
    if (check !== null) this.holdAnswer(check, statusCode, headers);
  }

  /**
   * `responseBody`: an answer whose status has a schema is held to be checked, unless its head
   * already says it cannot pass (not JSON, encoded, over `maxSize`, a status with no schema
   * under `unlisted: refuse`). No body (HEAD, 204, 304) or no schema (`unlisted: pass`): streamed.
   */
  private holdAnswer(check: ResponseCheck, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (answerHasNoBody(this.request.method, status)) return;
    const validate = responseValidator(check, status);
    if (validate === null) return;
    this.held = { check, validate: validate ?? null, chunks: [], size: 0, refused: false };
    const problem = validate === undefined ? `status ${status} has no schema in responseBody.schemas (unlisted: refuse)` : responseHeadProblem(check, headers);
    if (problem !== null) this.answerInvalid(problem, true);
  }

  /**
   * An answer the route's `responseBody` does not let through: refused — 502
   * `GH_ERR_UPSTREAM_RESPONSE_INVALID`, nothing of it sent (`abort`: the rest is not read), the
   * reason in the access log — or, with `onInvalid: log`, logged and passed on as it came
   * (streamed from here).
   */
  private answerInvalid(reason: string, abort: boolean): void {
    const held = this.held!;
    const refuse = held.check.onInvalid === 'refuse';
    this.upstream.answerInvalid(this.request.timing.route?.name ?? '', refuse ? 'refused' : 'passed');
    if (!refuse) {
      this.upstream.log.warn(
        { req_id: this.request.requestId, upstream: this.upstream.name, status: this.status, reason },
        "upstream answer does not match the route's responseBody; passed on (onInvalid: log)",
      );
      this.held = null;
      this.writeHead();
      for (const chunk of held.chunks) this.res.write(chunk);
      return;
    }
    held.refused = true;
    held.chunks.length = 0;
    this.head = null;
    // The access log's `request failed` line carries the reason (the client gets none of it).
    this.end(new UpstreamFailed('GH_ERR_UPSTREAM_RESPONSE_INVALID', { detail: `${reason} (upstream status ${this.status})` }));
    if (abort && this.controller !== null && !this.controller.aborted) this.controller.abort(new Error('answer refused by responseBody'));
  }

  /** A chunk of a held answer: kept, within `maxSize`. */
  private holdChunk(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const held = this.held!;
    if (held.refused) return;
    held.size += chunk.length;
    if (held.size > held.check.maxSize) {
      this.answerInvalid(`the answer is over responseBody.maxSize (${held.check.maxSize} bytes)`, true);
      // onInvalid: log — streamed from here.
      if (this.held === null) this.onResponseData(controller, chunk);
      return;
    }
    held.chunks.push(chunk);
  }

  /** The whole held answer: checked, then sent in one `res.end` (with its length) or refused. */
  private endHeld(): void {
    const held = this.held!;
    if (held.refused) return;
    const body = held.chunks.length === 1 ? held.chunks[0]! : Buffer.concat(held.chunks, held.size);
    const problem = responseBodyProblem(held.check, held.validate!, body);
    if (problem !== null) {
      this.answerInvalid(problem, false);
      // onInvalid: log — the answer went out as it came (answerInvalid wrote it).
      if (this.held === null) {
        this.res.end();
        this.end(null);
      }
      return;
    }
    const head = this.head;
    if (head !== null && this.length === -1) head.push('content-length', String(body.length));
    this.writeHead();
    this.res.end(body);
    this.end(null);
  }

  /**
   * The head the client gets, from the upstream's (a final answer or a 101): gatehouse's cookies
   * and, where gatehouse answers CORS, the upstream's `Access-Control-*` dropped; the upstream's
   * own address in a `Location` (a redirect, a 201) made the gateway's path, so clients never
   * see, or try to reach, an internal host; gatehouse's headers added.
   */
  private answerHead(headers: Record<string, string | string[] | undefined>, defaults: readonly [string, string][] | null = null): (string | string[])[] {
    const options = this.request.headerOptions;
    if (options.cookiePrefixes !== null && headers['set-cookie'] !== undefined) this.dropGatehouseCookies(headers, options.cookiePrefixes);
    if (options.ownsCors) dropCorsHeaders(headers);
    if (options.responseRemove) for (const name of options.responseRemove) delete headers[name];
    const location = headers.location;
    if (typeof location === 'string') headers.location = publicLocation(location, this.target!.origin, this.upstream.basePath, this.request.strippedPrefix);
    return responseHead(headers, this.request.requestId, this.request.responseHeaders, defaults);
  }

  private dropGatehouseCookies(headers: Record<string, string | string[] | undefined>, prefixes: readonly string[]): void {
    const value = headers['set-cookie']!;
    const kept = upstreamSetCookies(value, prefixes);
    if (kept === value) return;
    headers['set-cookie'] = kept;
    this.upstream.log.warn(
      { req_id: this.request.requestId, upstream: this.upstream.name },
      "upstream tried to set one of gatehouse's cookies; dropped",
    );
  }

  /**
   * The head goes out with the first body bytes (or the end), not when the upstream's head
   * arrives: an upstream that fails before sending any body still gets a clean 502. One
   * `writeHead` with a flat array: no per-header `setHeader` bookkeeping (issue 8).
   */
  private writeHead(): void {
    const head = this.head;
    if (head === null) return;
    this.head = null;
    // The upstream answered before the client's body was all read (an early 413, say): the rest
    // of it will not be read, so this HTTP/1.1 connection cannot carry another request and is
    // closed after the answer (RFC 9112 §9.6). Left open, it would hold the unread bytes and the
    // client's next request on it would hang. (HTTP/2 ends just the stream.)
    const body = this.request.body;
    if (body !== null && !body.complete && body.httpVersionMajor === 1) head.push('connection', 'close');
    this.res.writeHead(this.status, head);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.held !== null) return this.holdChunk(controller, chunk);
    if (this.head !== null) {
      if (chunk.length === this.length) {
        // The whole body at once (most API answers): undici ends the exchange in this same
        // parse, and `res.end(chunk)` sends head and body in one write without the cork that
        // `res.write` schedules for the next tick (issue 8).
        this.whole = chunk;
        return;
      }
      this.writeHead();
    }
    if (this.res.write(chunk) === false) {
      controller.pause();
      this.paused = true;
      // The drain listener and the deadline only once the client pushes back (most answers never do).
      if (!this.drainWatched) {
        this.drainWatched = true;
        this.res.on('drain', onClientDrain);
      }
      const timeout = this.request.timeout;
      if (timeout > 0) {
        if (this.stall === null) this.stall = setTimeout(onClientStalled, timeout, this);
        else this.stall.refresh();
      }
    }
  }

  onResponseEnd(): void {
    if (this.held !== null) return this.endHeld();
    if (this.head !== null) this.writeHead();
    if (this.whole !== null) this.res.end(this.whole);
    else this.res.end();
    this.end(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    // An answer refused by `responseBody` aborted the exchange: already answered.
    if (this.finished) return;
    if (this.bodyTooLarge || err instanceof BodyTooLarge) {
      this.end(new RequestRejected('GH_ERR_REQUEST_BODY_TOO_LARGE', 413, 'the request body is too large', { detail: 'streamed body over the limit' }));
      return;
    }
    if (this.res.destroyed || this.stalled) {
      this.end(null);
      return;
    }
    if (this.retryElsewhere(err)) return;
    this.end(upstreamError(err));
  }
}
