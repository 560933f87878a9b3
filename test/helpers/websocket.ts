import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';

/** A WebSocket upstream on 127.0.0.1 (the `ws` package on a node:http server), for the tunnel tests. */
export interface WebSocketUpstream {
  url: string;
  port: number;
  /** The opening handshakes that reached it (accepted or not). */
  handshakes: { url: string; headers: IncomingHttpHeaders }[];
  /** Plain (non-upgrade) requests that reached it. */
  plain: { method: string; url: string; headers: IncomingHttpHeaders }[];
  /** Connections open right now. */
  open(): number;
  /** Server-side sockets, newest last (a test can send from the upstream's side). */
  sockets: WebSocket[];
  /** The close code each server-side socket ended with, in the order they closed. */
  closes: { url: string; code: number; reason: string }[];
  /** Messages the upstream received, in order. */
  received: string[];
  close(): Promise<void>;
}

/**
 * Every message is echoed as `echo:<message>`. A handshake to a path under `/refuse` is refused
 * with 403 and a body; `/gone` is accepted and the upstream closes at once with 4000;
 * `/wrong-protocol` is answered 101 with `Upgrade: h2c`; a path with `/cookie` gets a 101 that
 * sets `__Host-gh-at` (gatehouse's cookie) and `upstream-own`.
 */
export async function startWebSocketUpstream(options: { tls?: { cert: string; key: string } } = {}): Promise<WebSocketUpstream> {
  const handshakes: WebSocketUpstream['handshakes'] = [];
  const plain: WebSocketUpstream['plain'] = [];
  const sockets: WebSocket[] = [];
  const closes: WebSocketUpstream['closes'] = [];
  const received: string[] = [];
  const raw = new Set<Duplex>();
  const onRequest = (req: IncomingMessage, res: http.ServerResponse) => {
    plain.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ plain: true, url: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  };
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : http.createServer(onRequest);
  const wss = new WebSocketServer({
    noServer: true,
    verifyClient(info: { req: IncomingMessage }, done: (ok: boolean, code?: number, message?: string) => void) {
      handshakes.push({ url: info.req.url ?? '', headers: info.req.headers });
      if ((info.req.url ?? '').startsWith('/refuse')) done(false, 403, 'upstream says no');
      else done(true);
    },
    handleProtocols: (protocols: Set<string>) => (protocols.has('chat.v2') ? 'chat.v2' : false),
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((req.url ?? '').startsWith('/wrong-protocol')) {
      // A 101 that switches to something else than what the client asked for.
      handshakes.push({ url: req.url ?? '', headers: req.headers });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
      socket.on('error', () => undefined);
      socket.on('end', () => socket.destroy());
      raw.add(socket);
      socket.on('close', () => raw.delete(socket));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  // `/cookie`: the 101 tries to set one of gatehouse's cookies, and one of its own.
  wss.on('headers', (headers: string[], req: IncomingMessage) => {
    if ((req.url ?? '').includes('/cookie')) headers.push('Set-Cookie: __Host-gh-at=planted; Path=/; Secure; HttpOnly', 'Set-Cookie: upstream-own=1; Path=/');
  });
  wss.on('connection', (ws, req) => {
    sockets.push(ws);
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => closes.push({ url: req.url ?? '', code, reason: reason.toString() }));
    if ((req.url ?? '').startsWith('/gone')) {
      ws.close(4000, 'upstream went away');
      return;
    }
    ws.on('message', (data, binary) => {
      const text = data.toString();
      received.push(binary ? `<${(data as Buffer).length} bytes>` : text);
      if (text === 'headers') ws.send(JSON.stringify(req.headers));
      else ws.send(binary ? data : `echo:${text}`, { binary });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    handshakes,
    plain,
    sockets,
    closes,
    received,
    open: () => [...wss.clients].filter((c) => c.readyState === WebSocket.OPEN).length,
    async close() {
      for (const c of wss.clients) c.terminate();
      for (const socket of raw) socket.destroy();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A connection through the gateway that opened, with the 101's headers. */
export interface OpenSocket {
  ws: WebSocket;
  headers: IncomingHttpHeaders;
  /** The next message (text). */
  next(): Promise<string>;
  /** Resolves with the close code when the connection closes (1006: cut without a close frame). */
  closed: Promise<{ code: number; reason: string }>;
}

/** What a refused handshake got: the status, headers and body of the gateway's (or upstream's) answer. */
export interface Refused {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Open a WebSocket (`ws://` or `wss://`) with extra handshake headers; resolves an open socket or a refusal. */
export function connect(
  url: string,
  options: { headers?: Record<string, string>; protocols?: string[]; ca?: string | Buffer; origin?: string; localAddress?: string } = {},
): Promise<OpenSocket | Refused> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers, ca: options.ca, origin: options.origin, handshakeTimeout: 10_000, localAddress: options.localAddress });
    let headers: IncomingHttpHeaders = {};
    const queue: string[] = [];
    const waiting: ((text: string) => void)[] = [];
    ws.on('message', (data) => {
      const text = data.toString();
      const w = waiting.shift();
      if (w) w(text);
      else queue.push(text);
    });
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.on('upgrade', (res) => {
      headers = res.headers;
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.on('error', (err) => {
      if (ws.readyState !== WebSocket.OPEN) reject(err);
    });
    ws.on('open', () =>
      resolve({
        ws,
        headers,
        closed,
        next: () => new Promise<string>((r) => (queue.length > 0 ? r(queue.shift()!) : waiting.push(r))),
      }),
    );
  });
}

/** Narrow a {@link connect} result to an open socket (throws with the refusal otherwise). */
export function opened(result: OpenSocket | Refused): OpenSocket {
  if ('ws' in result) return result;
  throw new Error(`expected the connection to open, got ${result.status}: ${result.body}`);
}

/** Narrow a {@link connect} result to a refusal (throws when it opened). */
export function refused(result: OpenSocket | Refused): Refused {
  if ('status' in result) return result;
  result.ws.terminate();
  throw new Error('expected the handshake to be refused, but the connection opened');
}
