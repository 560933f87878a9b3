import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { GatehouseError, internalError, RequestRejected, ServiceUnavailable } from '../errors.js';
import { clientCertField, forwardedElement, upstreamHeaders } from '../forward/headers.js';
import { clientClosed, dispatchForward, type ForwardRequest } from '../forward/upstream.js';
import { isWebSocketHandshake, namesWebSocket, type Tunnels, type WebSocketForward } from '../forward/tunnel.js';
import { sendContinue } from '../respond/continue.js';
import { bodyInvalid, bodyKindsOf, bodyMediaType, checkBody, readBody, type BodyCheck, type BodyMediaType } from '../validate/request-body.js';
import { checkHeaders, checkParams, checkQuery } from '../validate/query.js';
import { sendProblem } from '../respond/problem.js';
import { nextRequestId } from '../respond/request-id.js';
import type { CompiledRoute, Plan } from '../route/compile.js';
import { requestHeadProblem } from '../route/request-head.js';
import { methodOverrideProblem, methodOverrideRefused } from '../route/method-override.js';
import { normalizeTarget } from '../route/normalize.js';
import { requestHost } from '../route/host.js';
import type { TrustedProxies } from '../server/trusted-proxy.js';
import { normalizeIp } from '../server/addresses.js';
import { requestTrace } from '../telemetry/trace-context.js';
import { countsAsAuthFailure } from '../limit/auth-failures.js';
import type { RequestContext, Stage } from './context.js';
import type { GatewayServices } from './runtime.js';

/** What the runner needs to know about the listener a request came in on. */
export interface ListenerInfo {
  readonly name: string;
  readonly tls: boolean;
  /** Headers on every response of this listener (HSTS on HTTPS). */
  readonly responseHeaders: readonly [string, string][];
  /**
   * Plaintext policy for a plain listener next to an HTTPS one: returns an error or a redirect
   * URL, or null to proceed. Null function = no policy (HTTPS listener or plain-only setup).
   */
  readonly plaintext: ((req: IncomingMessage, ctx: RequestContext) => GatehouseError | string | null) | null;
  /** Hosts (host[:port], lowercase) this listener answers to, for absolute-form targets. */
  readonly ownHosts: ReadonlySet<string>;
  /** HTTPS with `tls.sni`: why a request's host is not for its connection (421), or null; null: no check. */
  readonly misdirected?: ((req: IncomingMessage) => string | null) | null;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const PEER_CERTIFICATE = Symbol('gatehouse.peerCertificate');
const PEER_IP = Symbol('gatehouse.peerIp');
type CertSocket = Partial<TLSSocket> & { [PEER_CERTIFICATE]?: PeerCertificate | null; [PEER_IP]?: string };

/**
 * The TCP peer's address, normalized once per connection (`remoteAddress` is a getter that
 * goes through `_getpeername` on every read). Not kept while the socket cannot say (closed).
 */
function peerAddress(socket: CertSocket): string {
  let ip = socket[PEER_IP];
  if (ip === undefined) {
    ip = normalizeIp(socket.remoteAddress ?? '');
    if (ip !== '') socket[PEER_IP] = ip;
  }
  return ip;
}

/**
 * The verified client certificate, parsed once per TLS connection (it cannot change during
 * one; `getPeerCertificate()` builds a new object on every call, ≈ 12 µs).
 */
function peerCertificate(socket: CertSocket): PeerCertificate | null {
  let cert = socket[PEER_CERTIFICATE];
  if (cert === undefined) {
    cert = socket.getPeerCertificate ? socket.getPeerCertificate() : null;
    socket[PEER_CERTIFICATE] = cert;
  }
  return cert;
}

/**
 * Requests a gateway has in flight: the runner counts each in at its start and out when its
 * response closes (the one `close` listener), and calls `idle` when the count reaches 0.
 */
export interface InFlight {
  count: number;
  idle: (() => void) | null;
  /** The gateway's open WebSocket connections (not requests: they outlive their handshake's count). */
  readonly tunnels: Tunnels;
}

/** One request in flight: what the runner's steps share (no per-request closures). */
interface Exchange {
  readonly plan: Plan;
  readonly listener: ListenerInfo;
  readonly services: GatewayServices;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ctx: RequestContext;
  readonly inFlight: InFlight;
}

const EXCHANGE = Symbol('gatehouse.exchange');
type WithExchange = ServerResponse & { [EXCHANGE]?: Exchange };

/**
 * The request runner: normalize → own handlers → match → stages → forward → respond + audit.
 * Denials come back from stages as values; anything thrown is a bug and answers 500.
 *
 * Hot path (issue 8): the steps run synchronously for as long as the stages answer
 * synchronously (a token-cache hit, a scope check, an in-memory limit); a promise is awaited
 * only where a stage returns one. No closure is created per request: the steps share one
 * {@link Exchange} and the response's `close` listener is a module-level function. Returns a
 * promise only when some step went asynchronous; nothing ever rejects.
 *
 * @example
 * ```ts
 * server.on('request', (req, res) => runRequest(getPlan(), listener, services, proxies, req, res));
 * ```
 */
export function runRequest(
  plan: Plan,
  listener: ListenerInfo,
  services: GatewayServices,
  proxies: TrustedProxies,
  req: IncomingMessage,
  res: ServerResponse,
  inFlight: InFlight,
): void | Promise<void> {
  const startedAt = performance.now();
  const incomingId = req.headers['x-request-id'];
  const id = typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : nextRequestId();
  const socket = req.socket as CertSocket;
  const peerIp = peerAddress(socket);
  const peerTrusted = proxies.any && proxies.isTrusted(peerIp);
  const forwardedProto = peerTrusted ? req.headers['x-forwarded-proto'] : undefined;
  const secure = listener.tls || (typeof forwardedProto === 'string' && forwardedProto.trim().toLowerCase() === 'https');
  const method = req.method ?? 'GET';
  const target = normalizeTarget(req.url ?? '', listener.ownHosts, plan.allowSemicolons);

  const ctx: RequestContext = {
    id,
    method,
    path: target.ok ? target.path : '',
    targetPath: target.ok ? target.path : '',
    query: target.ok ? target.query : '',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    clientIp: peerTrusted ? proxies.clientIp(peerIp, req.headers['x-forwarded-for']) : peerIp,
    peerIp,
    peerTrusted,
    secure,
    clientCertificate: listener.tls && socket.authorized ? peerCertificate(socket) : null,
    startedAt,
    route: null,
    params: {},
    token: null,
    tokenSource: null,
    tokenScheme: null,
    principal: null,
    strippedPrefix: '',
    upstreamHeaders: [],
    // Every answer carries the listener's headers (HSTS) first, then what stages add.
    responseHeaders: listener.responseHeaders.length === 0 ? [] : listener.responseHeaders.slice(),
    onFinish: [],
    log: services.log,
    upstreamLatency: undefined,
    upstreamTarget: undefined,
    trace: plan.tracing === null ? null : requestTrace(req.headers, plan.tracing),
    decision: 'pending',
  };
  const ex: Exchange = { plan, listener, services, req, res, ctx, inFlight };
  (res as WithExchange)[EXCHANGE] = ex;
  inFlight.count++;
  plan.inFlight.count++;
  res.on('close', onResponseClose);

  try {
    if (!target.ok) {
      return fail(ex, new RequestRejected('GH_ERR_REQUEST_BAD_PATH', 400, 'the request target is not acceptable', { detail: target.reason }));
    }
    const badHead = requestHeadProblem(req);
    if (badHead !== null) return fail(ex, badHead);
    if (plan.refuseMethodOverride) {
      const override = methodOverrideProblem(req.headers, ctx.method, ctx.query);
      if (override !== null) return fail(ex, methodOverrideRefused(override));
    }
    const misdirected = listener.misdirected;
    if (misdirected != null) {
      const why = misdirected(req);
      if (why !== null) return fail(ex, new RequestRejected('GH_ERR_REQUEST_MISDIRECTED', 421, 'this connection is not for that host', { detail: why }));
    }
    if (listener.plaintext) {
      const verdict = listener.plaintext(req, ctx);
      if (typeof verdict === 'string') {
        ctx.decision = 'redirect';
        res.writeHead(308, { location: verdict, 'content-length': 0, 'x-request-id': id });
        res.end();
        return;
      }
      if (verdict) return fail(ex, verdict);
    }
    return runHandlers(ex, 0);
  } catch (err) {
    return fail(ex, internalError(err));
  }
}

// The one `close` listener per request: the audit, then the forwarder (a client that left
// before the upstream answered aborts the upstream request), then the in-flight count.
function onResponseClose(this: WithExchange): void {
  const ex = this[EXCHANGE];
  if (ex) finish(ex.plan, ex.services, ex.ctx, this);
  clientClosed(this);
  if (ex === undefined) return;
  if (--ex.inFlight.count === 0 && ex.inFlight.idle) ex.inFlight.idle();
  // The plan's own count: a plan replaced by a reload closes once its last request is done.
  const planFlight = ex.plan.inFlight;
  if (--planFlight.count === 0 && planFlight.idle) planFlight.idle();
}

function isPromise<T>(value: unknown): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

// Every step below is called inside a try whose catch answers 500 (runRequest, or the async
// continuations), so a step may throw.

/** Own handlers (token-handler endpoints, …) from `from` on, then routing. */
function runHandlers(ex: Exchange, from: number): void | Promise<void> {
  const handlers = ex.plan.handlers;
  for (let i = from; i < handlers.length; i++) {
    const handled = handlers[i]!.handle!(ex.ctx, ex.req, ex.res);
    if (handled === true) {
      ex.ctx.decision = 'handled';
      return;
    }
    if (isPromise<boolean>(handled)) return handlersAsync(ex, handled, i);
  }
  return routeAndForward(ex);
}

async function handlersAsync(ex: Exchange, pending: Promise<boolean>, index: number): Promise<void> {
  try {
    if (await pending) {
      ex.ctx.decision = 'handled';
      return;
    }
    await runHandlers(ex, index + 1);
  } catch (err) {
    fail(ex, internalError(err));
  }
}

function routeAndForward(ex: Exchange): void | Promise<void> {
  const denial = matchRoute(ex.plan, ex.ctx, ex.req) ?? runStages(ex.ctx, ex.ctx.route!, 0);
  if (denial === null) return forward(ex);
  if (isPromise<GatehouseError | null>(denial)) return stagesAsync(ex, denial);
  return fail(ex, denial);
}

async function stagesAsync(ex: Exchange, pending: Promise<GatehouseError | null>): Promise<void> {
  try {
    const denial = await pending;
    if (denial === null) forward(ex);
    else fail(ex, denial);
  } catch (err) {
    fail(ex, internalError(err));
  }
}

/** Match the route (404/405), apply its path rewrite and the declared body size (413). */
function matchRoute(plan: Plan, ctx: RequestContext, req: IncomingMessage): GatehouseError | null {
  const match = plan.table.match(requestHost(req.headers), ctx.method, ctx.path);
  if (match.kind !== 'route') for (const mark of plan.unmatched) mark(ctx);
  if (match.kind === 'not-found') return new RequestRejected('GH_ERR_ROUTE_NOT_FOUND', 404, 'no route matches this path');
  if (match.kind === 'method-not-allowed') {
    return new RequestRejected('GH_ERR_ROUTE_METHOD_NOT_ALLOWED', 405, 'this method is not allowed on this path', {
      headers: { allow: match.allow },
    });
  }
  const r = match.route;
  ctx.route = r;
  ctx.params = match.params;
  if (r.config.stripPrefix && match.prefixLength > 0) {
    ctx.strippedPrefix = ctx.path.slice(0, match.prefixLength);
    (ctx as { path: string }).path = ctx.path.slice(match.prefixLength) || '/';
  }
  const length = req.headers['content-length'];
  if (length !== undefined && Number(length) > r.maxBodySize) {
    return new RequestRejected('GH_ERR_REQUEST_BODY_TOO_LARGE', 413, 'the request body is too large', { detail: `content-length ${length} > ${r.maxBodySize}` });
  }
  return null;
}

/** Slots in order: preAuth → credential → authenticate → (principal check) → authorize → limit. */
const AUTHORIZE_STEP = 3;
const STEP_COUNT = 5;

function stageAt(r: CompiledRoute, step: number): Stage | null {
  switch (step) {
    case 0:
      return r.preAuth;
    case 1:
      return r.credential;
    case 2:
      return r.authenticate;
    case 3:
      return r.authorize;
    default:
      return r.limit;
  }
}

/** Run the route's stages from `step` on: null to forward, the denial, or a promise of either. */
function runStages(ctx: RequestContext, r: CompiledRoute, step: number): GatehouseError | null | Promise<GatehouseError | null> {
  for (; step < STEP_COUNT; step++) {
    if (step === AUTHORIZE_STEP && !r.public && ctx.principal === null) {
      // Default deny: a protected route never forwards without a principal, whatever a stage did.
      return internalError(new Error(`route ${r.name}: authentication produced no principal`));
    }
    const stage = stageAt(r, step);
    if (stage === null) continue;
    const denial = stage(ctx);
    if (denial === null) continue;
    if (isPromise<GatehouseError | null>(denial)) return stagesFrom(ctx, r, step, denial);
    return denial;
  }
  return null;
}

async function stagesFrom(ctx: RequestContext, r: CompiledRoute, step: number, pending: Promise<GatehouseError | null>): Promise<GatehouseError | null> {
  const denial = await pending;
  if (denial) return denial;
  return runStages(ctx, r, step + 1);
}

function forward(ex: Exchange): void | Promise<void> {
  const r = ex.ctx.route!;
  const paramsCheck = r.paramsCheck;
  if (paramsCheck !== null) {
    const refusal = checkParams(paramsCheck, ex.ctx.params);
    if (refusal !== null) return fail(ex, refusal);
  }
  const queryCheck = r.queryCheck;
  if (queryCheck !== null) {
    const refusal = checkQuery(queryCheck, ex.ctx.query);
    if (refusal !== null) return fail(ex, refusal);
  }
  const headersCheck = r.headersCheck;
  if (headersCheck !== null) {
    const refusal = checkHeaders(headersCheck, ex.req.rawHeaders);
    if (refusal !== null) return fail(ex, refusal);
  }
  let websocket: WebSocketForward | null = null;
  if (ex.req.headers.upgrade !== undefined) {
    const verdict = websocketFor(ex, r);
    if (verdict instanceof GatehouseError) return fail(ex, verdict);
    websocket = verdict;
  }
  ex.ctx.decision = 'granted';
  const request = buildForward(ex.ctx, r, ex.req, ex.listener, websocket);
  const check = r.bodyCheck;
  if (check !== null && check.methods.has(ex.ctx.method)) return checkBodyThenForward(ex, r, request, check);
  // Granted (route, Content-Length, authentication, authorization, limits): a client that sent
  // `Expect: 100-continue` may send its body now, and not before. Bodiless requests skip this.
  if (request.body !== null) sendContinue(ex.req, ex.res);
  dispatchForward(r.upstream, request, ex.res, onForwarded, ex);
}

/**
 * `routes[].requestBody`: the media type before the body is asked for (415), the body read
 * whole within the route's `maxBodySize` (413), then checked (400); forwarded as the bytes
 * that were checked. A refusal whose body was not all read closes an HTTP/1.1 connection
 * rather than read the rest of it.
 */
function checkBodyThenForward(ex: Exchange, r: CompiledRoute, request: ForwardRequest, check: BodyCheck): void | Promise<void> {
  const req = ex.req;
  if (request.body === null) {
    if (check.required) return fail(ex, bodyInvalid(`a ${check.json ? 'JSON' : 'form'} body is required on ${ex.ctx.method} ${r.config.path}`));
    return dispatchForward(r.upstream, request, ex.res, onForwarded, ex);
  }
  const kind = bodyMediaType(check, req.headers['content-type']);
  if (typeof kind !== 'string') {
    const problem = kind.problem;
    return fail(ex, new RequestRejected('GH_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE', 415, `the request body must be ${bodyKindsOf(check)}: ${problem}`, { detail: problem, headers: unreadBodyHeaders(req) }));
  }
  sendContinue(req, ex.res);
  return readCheckForward(ex, r, request, check, kind);
}

async function readCheckForward(ex: Exchange, r: CompiledRoute, request: ForwardRequest, check: BodyCheck, kind: BodyMediaType): Promise<void> {
  try {
    const bytes = await readBody(ex.req, r.maxBodySize);
    // The client went away while sending: nothing to answer or forward.
    if (bytes === null || ex.res.destroyed) return;
    if (bytes === 'too-large') {
      return fail(ex, new RequestRejected('GH_ERR_REQUEST_BODY_TOO_LARGE', 413, 'the request body is too large', { detail: `body over ${r.maxBodySize} bytes`, headers: unreadBodyHeaders(ex.req) }));
    }
    const refusal = checkBody(check, bytes, kind, ex.plan.refuseMethodOverride ? ex.ctx.method : null);
    if (refusal !== null) return fail(ex, refusal);
    request.bodyBytes = bytes;
    dispatchForward(r.upstream, request, ex.res, onForwarded, ex);
  } catch (err) {
    fail(ex, internalError(err));
  }
}

/** `Connection: close` on an HTTP/1.1 answer sent before its request's body was all read (HTTP/2 resets the stream instead). */
function unreadBodyHeaders(req: IncomingMessage): Record<string, string> | undefined {
  return req.httpVersionMajor === 1 && !req.complete ? { connection: 'close' } : undefined;
}

/**
 * A granted request that asks to upgrade: null for any protocol but WebSocket (the `Upgrade`
 * header is hop-by-hop and the request goes on as a plain one, RFC 9110 §7.8); for a WebSocket
 * handshake, the refusal (a route without `websocket`, a malformed handshake, a full route) or
 * what the forwarder needs to open the connection, its place on the route taken.
 */
function websocketFor(ex: Exchange, r: CompiledRoute): WebSocketForward | GatehouseError | null {
  const req = ex.req;
  if (!namesWebSocket(req.headers.upgrade)) return null;
  const settings = r.config.websocket;
  // (A config built in code may leave the key out: off, as `false`.)
  if (!settings) return websocketNotAllowed(`route ${r.name} has no websocket settings`);
  // `req.upgrade`: node handed the request over as an upgrade (the listener takes them while a route has `websocket`).
  if ((req as { upgrade?: boolean }).upgrade !== true || !isWebSocketHandshake(req)) {
    return websocketNotAllowed(
      `not a WebSocket opening handshake (${req.method} over HTTP/${req.httpVersion}${req.headers.connection === undefined ? ', no Connection: Upgrade' : ''}): RFC 6455 §4.1 asks for a GET over HTTP/1.1`,
    );
  }
  const tunnels = ex.inFlight.tunnels;
  const ctx = ex.ctx;
  const principal = ctx.principal;
  // One user's connections count together whatever address they come from; without a subject, one address's.
  const client = principal?.subject !== undefined ? `sub:${principal.issuer}:${principal.subject}` : `ip:${ctx.clientIp}`;
  const full = tunnels.reserve(r.name, settings.maxConnections, client, settings.maxConnectionsPerClient);
  if (full !== null) {
    return new ServiceUnavailable('GH_ERR_WEBSOCKET_LIMIT_EXCEEDED', 'too many WebSocket connections are open on this route', {
      detail:
        full === 'client'
          ? `${tunnels.countOf(r.name, client)} open for this client (${client.startsWith('sub:') ? 'subject' : 'address'}), routes[].websocket.maxConnectionsPerClient ${settings.maxConnectionsPerClient}`
          : full === 'route'
            ? `${tunnels.count(r.name)} open, routes[].websocket.maxConnections ${settings.maxConnections}`
            : 'gatehouse is shutting down',
      retryAfter: 1,
    });
  }
  const now = ex.services.now();
  let closeAt = now + settings.maxDuration;
  let closeAtIsExpiry = false;
  const exp = principal?.claims.exp;
  if (settings.closeAtTokenExpiry && typeof exp === 'number') {
    // As long as the token is accepted: its `exp` plus the issuer's clock skew.
    const skew = ex.plan.config.issuers.find((i) => i.name === principal!.issuer)?.clockSkew ?? 0;
    const expiry = exp * 1000 + skew;
    if (expiry <= closeAt) {
      closeAt = expiry;
      closeAtIsExpiry = true;
    }
  }
  return { tunnels, settings, route: r.name, client, upstream: r.upstream.name, closeAt, closeAtIsExpiry, requestId: ctx.id, subject: principal?.subject };
}

function websocketNotAllowed(detail: string): GatehouseError {
  return new RequestRejected('GH_ERR_WEBSOCKET_NOT_ALLOWED', 400, 'this route does not accept WebSocket connections', { detail });
}

function onForwarded(ex: Exchange, error: GatehouseError | null): void {
  // Every answer that came from the upstream (also one that broke off after its head): the
  // forwarder wrote its latency into the context (`timing`) when the head arrived.
  const upstreamLatency = ex.ctx.upstreamLatency;
  if (upstreamLatency !== undefined) ex.services.metrics.recordUpstream(ex.ctx.route!.upstream.name, upstreamLatency / 1000);
  if (error) fail(ex, error);
}

/** Answer with a denial or failure (problem+json). Never throws. */
function fail(ex: Exchange, error: GatehouseError): void {
  const ctx = ex.ctx;
  if (ctx.decision === 'pending' || ctx.decision === 'granted') ctx.decision = error.status >= 500 ? 'error' : 'denied';
  (ctx as { error?: GatehouseError }).error = error;
  const onAuthFailure = ctx.route?.onAuthFailure;
  if (onAuthFailure != null && countsAsAuthFailure(error)) {
    try {
      onAuthFailure(ctx);
    } catch (err) {
      ex.services.log.error({ err, req_id: ctx.id }, 'could not count a failed authentication');
    }
  }
  try {
    const config = ex.plan.config;
    const dpopAlgs = ctx.tokenScheme === 'DPoP' || error.dpop ? config.dpop.algorithms.join(' ') : null;
    sendProblem(ex.res, error, ctx.id, config.gateway.realm, ctx.responseHeaders, ctx.method, dpopAlgs);
  } catch (err) {
    ex.services.log.error({ err, req_id: ctx.id }, 'could not send the error response');
    ex.res.destroy();
  }
}

function buildForward(ctx: RequestContext, r: CompiledRoute, req: IncomingMessage, listener: ListenerInfo, websocket: WebSocketForward | null): ForwardRequest {
  const peerTrusted = ctx.peerTrusted;
  // The client's own forwarding headers were dropped above; gatehouse sets those the upstream
  // takes (`upstreams[].forwardedHeaders`, all four by default).
  const headers = upstreamHeaders(req.rawHeaders, req.headers.connection, r.forward);
  const sends = r.upstream.sends;
  const host = requestHost(req.headers);
  if (sends.xForwardedFor) {
    const incomingXff = req.headers['x-forwarded-for'];
    headers.push('x-forwarded-for', peerTrusted && incomingXff ? `${Array.isArray(incomingXff) ? incomingXff.join(', ') : incomingXff}, ${ctx.peerIp}` : ctx.clientIp);
  }
  if (sends.xForwardedProto) headers.push('x-forwarded-proto', ctx.secure ? 'https' : 'http');
  if (sends.xForwardedHost && host) headers.push('x-forwarded-host', host);
  if (sends.forwarded) {
    const incomingForwarded = req.headers.forwarded;
    // RFC 7239 §4: this hop's element describes the connection gatehouse received.
    const element = forwardedElement(ctx.peerIp, listener.tls ? 'https' : 'http', host);
    headers.push('forwarded', peerTrusted && incomingForwarded ? `${incomingForwarded}, ${element}` : element);
  }
  // RFC 9440: the certificate the client presented on this TLS connection (verified against the listener's clientCa).
  if (sends.clientCert && ctx.clientCertificate !== null && ctx.clientCertificate.raw !== undefined) headers.push('client-cert', clientCertField(ctx.clientCertificate));
  headers.push('x-request-id', ctx.id);
  const trace = ctx.trace;
  if (trace != null) {
    headers.push('traceparent', trace.traceparent);
    if (trace.tracestate !== null) headers.push('tracestate', trace.tracestate);
  }
  // No `host` here: the client's was dropped above, and undici writes its pool's own line
  // (`host: <upstream host[:port]>`, built once per connection pool).
  if (ctx.principal && r.config.forwardToken) headers.push('authorization', ctx.principal.upstreamAuthorization);
  for (let i = 0; i < ctx.upstreamHeaders.length; i++) headers.push(ctx.upstreamHeaders[i]![0], ctx.upstreamHeaders[i]![1]);
  const rules = r.forward;
  if (rules.requestSet) for (let i = 0; i < rules.requestSet.length; i++) headers.push(rules.requestSet[i]![0], rules.requestSet[i]![1]);
  // HTTP/2 has no transfer-encoding: a body without content-length is one whose HEADERS frame did not end the stream.
  const hasBody =
    req.headers['content-length'] !== undefined
      ? req.headers['content-length'] !== '0'
      : req.headers['transfer-encoding'] !== undefined || (req.httpVersionMajor === 2 && !(req as unknown as H2Request).stream.endAfterHeaders);
  return {
    method: ctx.method,
    path: ctx.path + ctx.query,
    headers,
    body: hasBody ? req : null,
    bodyBytes: null,
    maxBodySize: r.maxBodySize,
    timeout: r.timeout,
    requestId: ctx.id,
    answerDefaults: (ctx.principal !== null ? rules.answerDefaultsWithToken : rules.answerDefaults) ?? null,
    // The route's answer headers replace the upstream's of those names (responseHead), as
    // gatehouse's own do; on the upstream's answers only (a 502 of gatehouse's keeps its own).
    responseHeaders: rules.responseSet ? ctx.responseHeaders.concat(rules.responseSet) : ctx.responseHeaders,
    timing: ctx,
    headerOptions: r.forward,
    strippedPrefix: ctx.strippedPrefix,
    websocket,
    responseCheck: r.responseCheck,
  };
}


type H2Request = { stream: { endAfterHeaders: boolean } };

const RUN_AT_ONCE = {
  push(...hooks: (() => void)[]): number {
    for (const hook of hooks) hook();
    return 0;
  },
  length: 0,
} as unknown as (() => void)[];

function finish(plan: Plan, services: GatewayServices, ctx: RequestContext, res: ServerResponse): void {
  for (let i = 0; i < ctx.onFinish.length; i++) {
    try {
      ctx.onFinish[i]!();
    } catch (err) {
      services.log.error({ err, req_id: ctx.id }, 'onFinish hook failed');
    }
  }
  // A client that left while a stage was waiting: stages still running push their undo hooks
  // after this point (e.g. a concurrency slot); run those at once instead of never.
  ctx.onFinish = RUN_AT_ONCE;
  const routeName = ctx.route?.name ?? '-';
  const status = res.statusCode;
  const latency = performance.now() - ctx.startedAt;
  const error = (ctx as { error?: GatehouseError }).error;
  services.metrics.recordRequest(routeName, status, latency / 1000);
  if (error) services.metrics.denials.inc({ route: routeName, code: error.code });
  if (!plan.config.log.accessLog) return;
  const log: Logger = services.log;
  const entry: Record<string, unknown> = {
    req_id: ctx.id,
    method: ctx.method,
    path: ctx.path,
    route: routeName,
    status,
    latency_ms: Math.round(latency * 1000) / 1000,
    upstream_ms: ctx.upstreamLatency === undefined ? undefined : Math.round(ctx.upstreamLatency * 1000) / 1000,
    upstream_target: ctx.upstreamTarget,
    client_ip: ctx.clientIp,
    decision: ctx.decision,
    // gatehouse's own endpoints (token-handler agent) grant by their answer's status
    granted: ctx.decision === 'granted' || ctx.decision === 'redirect' || (ctx.decision === 'handled' && status < 400),
    sub: ctx.principal?.subject,
    issuer: ctx.principal?.issuer,
    trace_id: ctx.trace?.traceId,
  };
  // A WebSocket handshake the upstream accepted (101) is over, not aborted: the connection's own line comes when it closes.
  if (!res.writableFinished && ctx.decision === 'granted' && status !== 101) entry.aborted = true;
  if (error) {
    entry.reason = error.code;
    if (error.detail) entry.detail = error.detail;
    if (error.status >= 500 && error.code === 'GH_ERR_INTERNAL') {
      log.error({ ...entry, err: error.cause ?? error }, 'request failed');
      return;
    }
    if (error.status >= 500) {
      log.warn(entry, 'request failed');
      return;
    }
  }
  log.info(entry, 'request');
}
