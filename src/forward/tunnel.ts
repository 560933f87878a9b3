/**
 * WebSocket connections (RFC 6455) once the upstream has answered the opening handshake with
 * `101 Switching Protocols`: two sockets joined byte for byte, held to the route's
 * `websocket` settings (docs/websockets.md) — an idle timeout, a longest duration, the token's
 * expiry, the size of the client's messages — and counted per route and per client, so that a
 * route's open connections stay bounded, one client cannot take them all, and a shutdown
 * closes them all.
 *
 * Authentication, authorization and limits are decided on the handshake, which runs through the
 * pipeline as any request does. Of the frames, gatehouse reads the headers only (frames.ts): to
 * hold the client's messages to `maxMessageSize`, and to close a connection it ends itself with
 * a close frame to each side rather than a cut.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Gauge, Counter } from 'prom-client';
import type { WebSocketConfig } from '../config/types.js';
import type { Metrics } from '../telemetry/metrics.js';
import { closeFrame, FrameCursor, FRAMES_OK } from './frames.js';

/** Why a connection ended, as the log line and `gatehouse_websocket_closed_total{reason}` say it. */
export type TunnelCloseReason =
  | 'client-closed'
  | 'upstream-closed'
  | 'client-error'
  | 'upstream-error'
  | 'idle-timeout'
  | 'max-duration'
  | 'token-expired'
  | 'message-too-big'
  | 'message-rate'
  | 'shutdown';

/**
 * Whether a request is a WebSocket opening handshake (RFC 6455 §4.1): a `GET` over HTTP/1.1
 * whose `Upgrade` names `websocket` (case-insensitive, among other protocols or alone).
 *
 * @example
 * ```ts
 * isWebSocketHandshake(req); // true for GET /chat with `Connection: Upgrade`, `Upgrade: websocket`
 * ```
 */
export function isWebSocketHandshake(req: IncomingMessage): boolean {
  if (req.method !== 'GET' || req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return false;
  return namesWebSocket(req.headers.upgrade);
}

/** An `Upgrade` value naming `websocket` (RFC 9110 §7.8: a list of protocols, case-insensitive). */
export function namesWebSocket(upgrade: string | undefined): boolean {
  if (upgrade === undefined) return false;
  for (const part of upgrade.split(',')) {
    const protocol = part.trim();
    // `websocket` or `websocket/13`-style versions (none is registered, but the grammar allows them)
    if (protocol.length >= 9 && protocol.slice(0, 9).toLowerCase() === 'websocket' && (protocol.length === 9 || protocol[9] === '/')) return true;
  }
  return false;
}

/** What one handshake on a `websocket` route brings to the forwarder. */
export interface WebSocketForward {
  readonly tunnels: Tunnels;
  readonly settings: WebSocketConfig;
  readonly route: string;
  /** Who the connection counts against for `maxConnectionsPerClient`: `sub:<issuer>:<sub>`, or `ip:<address>` without a subject. */
  readonly client: string;
  readonly upstream: string;
  /** When the connection must be closed at the latest (ms since epoch): the token's expiry or `maxDuration`. */
  readonly closeAt: number;
  /** `closeAt` is the token's expiry (not `maxDuration`): the reason it is logged with. */
  readonly closeAtIsExpiry: boolean;
  readonly requestId: string;
  readonly subject: string | undefined;
}

/**
 * The open WebSocket connections of one gateway (one process), across reloads: a reload leaves
 * them open; a shutdown closes them.
 *
 * @example
 * ```ts
 * const tunnels = new Tunnels(log, metrics, Date.now);
 * if (tunnels.reserve('chat', 1000, 'ip:192.0.2.7', 50) !== null) return tooMany();
 * ```
 */
export class Tunnels {
  private readonly open = new Set<Tunnel>();
  /** Connections per route, handshakes under way included. */
  private readonly counts = new Map<string, number>();
  /** Connections per route and client (`route\nclient`), handshakes under way included. */
  private readonly perClient = new Map<string, number>();
  private readonly closed: Counter<string>;
  private closing = false;

  constructor(
    readonly log: Logger,
    metrics: Metrics,
    readonly now: () => number,
  ) {
    const counts = this.counts;
    const gauge: Gauge<string> = metrics.gauge('gatehouse_websocket_connections', 'Open WebSocket connections (and handshakes under way), by route.', ['route']);
    // Read when scraped: nothing per connection.
    (gauge as unknown as { collect?: () => void }).collect = function (this: Gauge<string>) {
      this.reset();
      for (const [route, n] of counts) this.set({ route }, n);
    };
    this.closed = metrics.counter('gatehouse_websocket_closed_total', 'WebSocket connections that ended, by route and reason.', ['route', 'reason']);
  }

  /** Open connections (handshakes under way included) on `route`. */
  count(route: string): number {
    return this.counts.get(route) ?? 0;
  }

  /** Open connections (handshakes under way included) of `client` on `route`. */
  countOf(route: string, client: string): number {
    return this.perClient.get(`${route}\n${client}`) ?? 0;
  }

  /**
   * Take a place on `route` for a handshake of `client`: `null` when taken, else why not — the
   * route has `max` open, the client has `maxPerClient` open on it, or the gateway is shutting down.
   */
  reserve(route: string, max: number, client: string, maxPerClient: number): 'route' | 'client' | 'closing' | null {
    if (this.closing) return 'closing';
    const n = this.counts.get(route) ?? 0;
    if (n >= max) return 'route';
    const key = `${route}\n${client}`;
    const mine = this.perClient.get(key) ?? 0;
    if (mine >= maxPerClient) return 'client';
    this.counts.set(route, n + 1);
    this.perClient.set(key, mine + 1);
    return null;
  }

  /** Give a place back (a handshake the upstream refused or that failed, a connection that ended). */
  release(route: string, client: string): void {
    const n = (this.counts.get(route) ?? 1) - 1;
    if (n <= 0) this.counts.delete(route);
    else this.counts.set(route, n);
    const key = `${route}\n${client}`;
    const mine = (this.perClient.get(key) ?? 1) - 1;
    if (mine <= 0) this.perClient.delete(key);
    else this.perClient.set(key, mine);
  }

  /** Join the client's socket and the upstream's; the place taken by {@link reserve} is the tunnel's now. */
  join(client: Socket, upstream: Socket, forward: WebSocketForward): void {
    if (this.closing) {
      client.destroy();
      upstream.destroy();
      this.release(forward.route, forward.client);
      return;
    }
    const tunnel = new Tunnel(this, client, upstream, forward);
    this.open.add(tunnel);
    tunnel.start();
  }

  /** Close every connection (shutdown); later handshakes are refused. */
  closeAll(): void {
    this.closing = true;
    for (const tunnel of [...this.open]) tunnel.close('shutdown');
  }

  /** @internal a tunnel that ended. */
  ended(tunnel: Tunnel, reason: TunnelCloseReason): void {
    if (!this.open.delete(tunnel)) return;
    this.release(tunnel.forward.route, tunnel.forward.client);
    this.closed.inc({ route: tunnel.forward.route, reason });
  }
}

/** How long a side that ended (FIN), or was sent a close frame, may take to flush and close before it is cut. */
const LINGER_MS = 5_000;

/**
 * The close frame each side gets when gatehouse ends a connection itself (RFC 6455 §7.4.1), sent
 * where the side's stream is between frames; elsewhere the connection is cut (the client sees 1006).
 */
const CLOSE_CODES: Partial<Record<TunnelCloseReason, { code: number; reason: string }>> = {
  'idle-timeout': { code: 1001, reason: 'idle timeout' },
  'max-duration': { code: 1001, reason: 'maximum duration reached' },
  'token-expired': { code: 1008, reason: 'token expired' },
  shutdown: { code: 1001, reason: 'going away' },
  'message-too-big': { code: 1009, reason: 'message too big' },
  'message-rate': { code: 1008, reason: 'message rate exceeded' },
};

class Tunnel {
  private readonly opened: number;
  private readonly clientRead0: number;
  private readonly clientWritten0: number;
  private deadline: NodeJS.Timeout | null = null;
  private done = false;
  /** Frames from the client (masked), with the message size limit; frames from the upstream. */
  private readonly fromClient: FrameCursor;
  private readonly fromUpstream = new FrameCursor(Infinity);

  constructor(
    private readonly tunnels: Tunnels,
    private readonly client: Socket,
    private readonly upstream: Socket,
    readonly forward: WebSocketForward,
  ) {
    this.opened = tunnels.now();
    this.clientRead0 = client.bytesRead;
    this.clientWritten0 = client.bytesWritten;
    this.fromClient = new FrameCursor(forward.settings.maxMessageSize, forward.settings.maxMessageRate ?? Infinity);
  }

  start(): void {
    const { client, upstream, forward } = this;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('error', () => this.close('client-error'));
    upstream.on('error', () => this.close('upstream-error'));
    // A side that closes (after its FIN went on, or reset) ends the tunnel.
    client.on('close', () => this.close('client-closed'));
    upstream.on('close', () => this.close('upstream-closed'));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    // Every byte either way passes through the client's socket: its timeout is the idle timeout.
    client.setTimeout(forward.settings.idleTimeout, () => this.close('idle-timeout'));
    upstream.setTimeout(0);
    const wait = forward.closeAt - this.tunnels.now();
    if (wait <= 0) {
      this.close(forward.closeAtIsExpiry ? 'token-expired' : 'max-duration');
      return;
    }
    this.deadline = setTimeout(() => this.close(forward.closeAtIsExpiry ? 'token-expired' : 'max-duration'), Math.min(wait, 2 ** 31 - 1));
    this.deadline.unref();
    client.on('data', (chunk: Buffer) => this.relay(chunk, this.fromClient, client, upstream));
    upstream.on('data', (chunk: Buffer) => this.relay(chunk, this.fromUpstream, upstream, client));
    client.resume();
    upstream.resume();
  }

  /** One chunk on to the other side, its frame headers read on the way; the reader waits while the writer is full. */
  private relay(chunk: Buffer, cursor: FrameCursor, from: Socket, to: Socket): void {
    if (this.done) return;
    const refused = cursor.feed(chunk);
    if (refused !== FRAMES_OK) {
      // A message over maxMessageSize or maxMessageRate (only the client's are limited): what came before it goes on.
      if (refused > 0) to.write(chunk.subarray(0, refused));
      this.close(cursor.refusal === 'rate' ? 'message-rate' : 'message-too-big');
      return;
    }
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  }

  /**
   * End the tunnel once. A side that closed lets the other flush what it was sent (a WebSocket
   * close frame) and end, for at most {@link LINGER_MS}. A bound gatehouse enforces (idle,
   * duration, expiry, shutdown, message size) sends each side a close frame where its stream is
   * between frames, then ends both; a socket error cuts both at once.
   */
  close(reason: TunnelCloseReason): void {
    if (this.done) return;
    this.done = true;
    if (this.deadline !== null) clearTimeout(this.deadline);
    const { client, upstream } = this;
    const own = CLOSE_CODES[reason];
    if (reason === 'client-closed' || reason === 'upstream-closed') {
      const other = reason === 'client-closed' ? upstream : client;
      other.end();
      setTimeout(() => other.destroy(), LINGER_MS).unref();
    } else if (own !== undefined) {
      this.closeSide(client, this.fromUpstream, closeFrame(own.code, own.reason, false));
      this.closeSide(upstream, this.fromClient, closeFrame(1001, 'going away', true));
    } else {
      client.destroy();
      upstream.destroy();
    }
    this.tunnels.ended(this, reason);
    const forward = this.forward;
    const entry = {
      req_id: forward.requestId,
      route: forward.route,
      upstream: forward.upstream,
      sub: forward.subject,
      reason,
      duration_ms: this.tunnels.now() - this.opened,
      bytes_from_client: client.bytesRead - this.clientRead0,
      bytes_to_client: client.bytesWritten - this.clientWritten0,
    };
    if (reason === 'client-error' || reason === 'upstream-error') this.tunnels.log.warn(entry, 'websocket closed');
    else this.tunnels.log.info(entry, 'websocket closed');
  }

  /** A close frame and the end to one side when what it was sent so far ends between frames; cut otherwise. */
  private closeSide(socket: Socket, sent: FrameCursor, frame: Buffer): void {
    if (socket.destroyed) return;
    if (!sent.atBoundary() || !socket.writable) {
      socket.destroy();
      return;
    }
    socket.end(frame);
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  }
}
