import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { GatehouseConfig, ListenerConfig } from '../config/types.js';
import { InvalidRequest, RequestRejected, type GatehouseError } from '../errors.js';
import type { RequestContext } from '../pipeline/context.js';
import type { ListenerInfo } from '../pipeline/run.js';
import { holdForContinue } from '../respond/continue.js';
import type { Metrics } from '../telemetry/metrics.js';
import { OWN_ANSWER_HEADERS, problemBody, sendProblem } from '../respond/problem.js';
import { nextRequestId } from '../respond/request-id.js';
import { createTlsServer, hstsHeader, type CertificateInfo, type TlsServer } from './tls.js';

/** A bound listener. */
export interface BoundListener {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly info: ListenerInfo;
  readonly server: http.Server;
  /** `http://127.0.0.1:8080` (the bound port, also when 0 was asked). */
  url: string;
  /** Reload certificates (HTTPS listeners); resolves false when the new files are broken. */
  reloadCertificates?(): Promise<boolean>;
  /** The certificate new handshakes get (HTTPS listeners). */
  certificate?(): CertificateInfo;
  /**
   * Take HTTP/1.1 upgrade requests off node's parser (true while some route has `websocket`):
   * they run through the pipeline on their own connection, closed after the answer unless a
   * WebSocket handshake is accepted. Off, node serves them as plain requests.
   */
  acceptUpgrades(on: boolean): void;
  close(): void;
}

export type RequestListener = (info: ListenerInfo, req: IncomingMessage, res: ServerResponse) => void;

/**
 * Create (not yet bound) a listener with the resource limits applied: header size (431),
 * headers and request timeouts (408), keep-alive timeout, max connections.
 */
export function createListener(config: ListenerConfig, gateway: GatehouseConfig, log: Logger, onRequest: RequestListener, metrics?: Metrics): BoundListener {
  const limits = gateway.limits;
  const headersTimeout = Math.min(limits.headersTimeout, limits.requestTimeout || limits.headersTimeout);
  const serverOptions: http.ServerOptions = {
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(headersTimeout / 4))),
    // gatehouse checks Host itself (route/host.ts), answering problem+json with the listener's
    // headers rather than node's bare 400.
    requireHostHeader: false,
    joinDuplicateHeaders: false,
  };
  const anyTls = gateway.listen.some((l) => l.tls);
  const info: ListenerInfo = {
    name: config.name,
    tls: Boolean(config.tls),
    responseHeaders: config.tls ? hstsHeader(config.tls) : [],
    plaintext: config.tls ? null : plaintextPolicy(config, gateway, anyTls),
    ownHosts: new Set(),
    misdirected: null,
  };
  const handler = (req: IncomingMessage, res: ServerResponse) => onRequest(info, req, res);
  let server: http.Server;
  let secure: TlsServer | null = null;
  if (config.tls) {
    // HTTP/2 + HTTP/1.1 (or HTTPS only): the request/response objects differ (compat API for
    // h2) but offer what runRequest uses; the server offers what this module uses.
    secure = createTlsServer(config, gateway, serverOptions, handler, log, metrics);
    server = secure.server as unknown as http.Server;
    (info as { misdirected?: ListenerInfo['misdirected'] }).misdirected = secure.misdirected;
  } else {
    server = http.createServer(serverOptions, handler);
  }
  server.maxConnections = limits.maxConnections;
  // Raw answers to unparseable requests carry the listener's HSTS too (docs/tls.md): built once.
  const rawHeaders = headerLines(info.responseHeaders);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(err, socket, log, config.name, rawHeaders));
  // `Expect` (RFC 9110 §10.1.1). Without these listeners node answers `100 Continue` at once,
  // before routing or authentication, and a bare 417 to any other expectation. http.Server,
  // https.Server and Http2SecureServer (h2 and its HTTP/1.1 fallback) all emit both events.
  server.on('checkContinue', onCheckContinue);
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => answerExpectation(server, req, res, info, log));
  // CONNECT: gatehouse is no forward proxy. Without this listener node drops an HTTP/1.1
  // connection without a word (and answers HTTP/2 a bare 405). HTTP/2 passes a request and a
  // response: it runs as any request (no :path: refused as a bad target, with the listener's
  // headers); HTTP/1.1 passes the socket.
  server.on('connect', (req: IncomingMessage, second: Socket | ServerResponse) => {
    if (req.httpVersionMajor === 2) server.emit('request', req, second);
    else answerConnect(second as Socket, log, config.name, rawHeaders);
  });
  const onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer) => answerUpgrade(req, socket, head, handler, log, config.name, rawHeaders);
  let upgrades = false;
  return {
    name: config.name,
    config,
    info,
    server,
    url: '',
    acceptUpgrades(on: boolean) {
      if (on === upgrades) return;
      upgrades = on;
      if (on) server.on('upgrade', onUpgrade);
      else server.off('upgrade', onUpgrade);
    },
    reloadCertificates: secure ? secure.reload : undefined,
    certificate: secure ? secure.certificate : undefined,
    close() {
      secure?.close();
      server.close();
      server.closeIdleConnections?.();
    },
  };
}

/** Bind a listener; resolves with its URL. */
export function bindListener(listener: BoundListener): Promise<string> {
  return new Promise((resolve, reject) => {
    const { server, config } = listener;
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(config.port, config.host, () => {
      server.off('error', onError);
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : config.port;
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      listener.url = `${config.tls ? 'https' : 'http'}://${host}:${port}`;
      boundPorts.set(config, port);
      const own = listener.info.ownHosts as Set<string>;
      own.add(`${host}:${port}`.toLowerCase());
      own.add(`localhost:${port}`);
      resolve(listener.url);
    });
  });
}

// Errors Node's HTTP parser raises before a request exists: answered here as problem+json.
// `headers`: the listener's own header lines (HSTS on HTTPS, nothing on plain), each ending CRLF.
function answerClientError(err: NodeJS.ErrnoException, socket: Socket, log: Logger, listener: string, headers: string): void {
  const code = err.code ?? '';
  let error: GatehouseError;
  if (code === 'HPE_HEADER_OVERFLOW') {
    error = new RequestRejected('GH_ERR_REQUEST_HEADERS_TOO_LARGE', 431, 'the request headers are too large');
  } else if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    error = new RequestRejected('GH_ERR_REQUEST_TIMEOUT', 408, 'the request took too long to arrive');
  } else if (code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  } else {
    error = new RequestRejected('GH_ERR_REQUEST_BAD_HEADER', 400, 'the request could not be parsed');
  }
  // An answer already under way on this socket cannot be followed by another: cut it instead.
  const answering = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  refuseOnSocket(socket, error, { listener, detail: `${code}: ${err.message}` }, log, headers, !answering);
}

/**
 * Refuse what came on `socket` before any request object could answer it: one `client error`
 * log line (with `fields`), then the problem+json written on the socket and the connection
 * closed — or just closed when it cannot take an answer any more.
 */
function refuseOnSocket(socket: Socket, error: GatehouseError, fields: Record<string, unknown>, log: Logger, headers: string, canAnswer = true): void {
  const id = nextRequestId();
  log.info({ detail: error.detail, ...fields, req_id: id, reason: error.code, client_ip: socket.remoteAddress, granted: false }, 'client error');
  if (canAnswer && socket.writable) writeRawProblem(socket, error, id, headers);
  else socket.destroy();
}

// CONNECT (HTTP/1.1): its target is authority-form (`host:port`), not a path: refused as every
// target that is not origin-form is (400 GH_ERR_REQUEST_BAD_PATH), then the connection is
// closed (what a client sends after a CONNECT is not HTTP). HTTP/2's CONNECT has no :path and
// is refused by the pipeline the same way.
function answerConnect(socket: Socket, log: Logger, listener: string, headers: string): void {
  const error = new RequestRejected('GH_ERR_REQUEST_BAD_PATH', 400, 'the request target is not acceptable', {
    detail: 'CONNECT: authority-form target; gatehouse is not a forward proxy',
  });
  refuseOnSocket(socket, error, { listener, method: 'CONNECT' }, log, headers);
}

// An HTTP/1.1 request with `Connection: Upgrade` (node hands these over only while an 'upgrade'
// listener is set: some route takes WebSocket connections). It runs through the pipeline like any
// request, with a response of its own on the socket: a WebSocket handshake the upstream accepts
// becomes a connection (forward/tunnel.ts); any other answer closes the connection after it.
// What follows the head on the socket is not parsed by node any more, so an upgrade request with
// a body (`Upgrade: h2c` on a POST) is refused rather than forwarded without it.
function answerUpgrade(
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  log: Logger,
  listener: string,
  headers: string,
): void {
  // node took its own error listener off: a reset from here on must not crash the process.
  socket.on('error', onUpgradeSocketError);
  if (head.length > 0) socket.unshift(head);
  const length = req.headers['content-length'];
  if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined) {
    const error = new RequestRejected('GH_ERR_REQUEST_UPGRADE_WITH_BODY', 400, 'a request that asks to upgrade the connection cannot carry a body here', {
      detail: `upgrade: ${String(req.headers.upgrade).slice(0, 64)} with a body`,
    });
    refuseOnSocket(socket, error, { listener, method: req.method, path: (req.url ?? '').slice(0, 256) }, log, headers);
    return;
  }
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.on('finish', onUpgradeAnswered);
  handler(req, res);
}

function onUpgradeSocketError(this: Socket): void {
  this.destroy();
}

// A refused (or plainly answered) upgrade request: the answer is out, the connection ends with it.
function onUpgradeAnswered(this: ServerResponse): void {
  const socket = this.socket;
  if (socket === null) return;
  socket.end();
  // A client that never reads must not keep the socket.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Header pairs as raw lines, each ending CRLF, for the answers written on the socket. */
function headerLines(pairs: readonly (readonly [string, string])[]): string {
  return pairs.map(([name, value]) => `${name}: ${value}\r\n`).join('');
}

const OWN_ANSWER_LINES = headerLines(OWN_ANSWER_HEADERS);

/** A problem+json answer written on the socket itself (no request object), then the connection closed. */
function writeRawProblem(socket: Socket, error: GatehouseError, id: string, headers: string): void {
  const body = problemBody(error, id);
  // A client that never reads must not keep the socket: destroy it shortly after.
  setTimeout(() => socket.destroy(), 1000).unref();
  socket.end(
    `HTTP/1.1 ${error.status} ${error.title}\r\nconnection: close\r\ncontent-type: application/problem+json\r\n${OWN_ANSWER_LINES}x-request-id: ${id}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${headers}\r\n${body}`,
  );
}

/** `100-continue` among the expectations: node's own test for HTTP/1.1 (its h2 compat layer compares exactly). */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

// `Expect: 100-continue`: the request runs as any other, through the server's own 'request'
// listener (over TLS that is the HTTP/2 guard: header-list size, cookies, body timeout), and is
// held: the runner sends `100 Continue` only once it is granted (pipeline/run.ts sendContinue).
// A refused request gets its 4xx without a 100; node then closes an HTTP/1.1 connection
// (`Connection: close`), since the client may or may not send the body after all.
function onCheckContinue(this: http.Server, req: IncomingMessage, res: ServerResponse): void {
  holdForContinue(req);
  this.emit('request', req, res);
}

// Any other expectation: 417 problem+json, before routing (node's own 417 has no body).
function answerExpectation(server: http.Server, req: IncomingMessage, res: ServerResponse, info: ListenerInfo, log: Logger): void {
  const value = req.headers.expect ?? '';
  // HTTP/2: node's compat layer sends `100-Continue` (any case, or in a list) here.
  if (CONTINUE.test(value)) return onCheckContinue.call(server, req, res);
  const error = new RequestRejected('GH_ERR_REQUEST_EXPECTATION_FAILED', 417, 'the expectation in the Expect header cannot be met; only 100-continue is supported', {
    detail: `expect: ${value.slice(0, 64)}`,
  });
  log.info({ listener: info.name, reason: error.code, detail: error.detail, client_ip: req.socket.remoteAddress, granted: false }, 'client error');
  sendProblem(res, error, nextRequestId(), 'gatehouse', info.responseHeaders, req.method);
}

/** The port each listener really got (differs from the config for `port: 0`): redirects use it. */
const boundPorts = new WeakMap<ListenerConfig, number>();

/**
 * A plain listener next to an HTTPS one: credentials are refused (never forwarded over
 * plaintext) and everything else is redirected (308) to HTTPS. With `allowPlaintext: true`
 * (behind a TLS-terminating proxy) requests are proxied; credentials then need the trusted
 * proxy's `X-Forwarded-Proto: https`.
 */
function plaintextPolicy(
  config: ListenerConfig,
  gateway: GatehouseConfig,
  anyTls: boolean,
): ((req: IncomingMessage, ctx: RequestContext) => GatehouseError | string | null) | null {
  if (config.allowPlaintext) {
    if (gateway.trustedProxies.length === 0) return null;
    return (req, ctx) => (!ctx.secure && carriesCredentials(req) ? plaintextCredentials() : null);
  }
  if (!anyTls) return null; // plain-only setup (development, or TLS terminated elsewhere without trusted proxies)
  const https = gateway.listen.find((l) => l.tls)!;
  return (req, ctx) => {
    const httpsPort = config.httpsPort ?? boundPorts.get(https) ?? https.port;
    if (carriesCredentials(req)) return plaintextCredentials();
    if (config.redirectToHttps === false) {
      return new RequestRejected('GH_ERR_HTTPS_REQUIRED', 400, 'this endpoint is only served over https', { detail: `use https on port ${httpsPort}` });
    }
    // The runner checked Host before this policy runs (route/host.ts): one `host[:port]`, or
    // none at all (HTTP/1.0), when the HTTPS listener's own host stands in.
    const hostHeader = req.headers.host;
    const hostname = hostHeader ? hostHeader.replace(/:\d*$/, '') : https.host;
    const port = httpsPort === 443 ? '' : `:${httpsPort}`;
    return `https://${hostname}${port}${ctx.path}${ctx.query}`;
  };
}

function carriesCredentials(req: IncomingMessage): boolean {
  return req.headers.authorization !== undefined || req.headers.cookie !== undefined || req.headers['proxy-authorization'] !== undefined;
}

function plaintextCredentials(): GatehouseError {
  return new InvalidRequest('GH_ERR_PLAINTEXT_CREDENTIALS', 'credentials are never accepted over plaintext http; use https', { challenge: false });
}
