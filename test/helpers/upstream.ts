import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export interface TestUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Replace the default echo answer. */
  setHandler(handler: ((req: IncomingMessage, res: ServerResponse, body: string) => void) | null): void;
  close(): Promise<void>;
}

/**
 * An echo upstream on 127.0.0.1: records every request it receives and answers
 * `{ method, url, headers, body }` as JSON.
 */
export async function startUpstream(): Promise<TestUpstream> {
  const requests: RecordedRequest[] = [];
  let custom: ((req: IncomingMessage, res: ServerResponse, body: string) => void) | null = null;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => undefined);
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      if (custom) return custom(req, res, body);
      const text = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    setHandler(handler) {
      custom = handler;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
