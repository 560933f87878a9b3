import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A JWKS endpoint on 127.0.0.1 whose document (or failure) tests change at will. */
export interface JwksServer {
  url: string;
  port: number;
  /** The document served; set to null to answer 503. */
  document: unknown;
  hits: number;
  close(): Promise<void>;
}

/** Start a JWKS server on `port` (0: a free one). */
export async function startJwksServer(document: unknown, port = 0): Promise<JwksServer> {
  const state = { document, hits: 0 };
  const server = http.createServer((req, res) => {
    state.hits++;
    if (state.document === null) {
      res.writeHead(503).end();
      return;
    }
    const body = JSON.stringify(state.document);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  server.keepAliveTimeout = 100;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/jwks`,
    port: actual,
    get document() {
      return state.document;
    },
    set document(value: unknown) {
      state.document = value;
    },
    get hits() {
      return state.hits;
    },
    set hits(n: number) {
      state.hits = n;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port that was free a moment ago (for a server that starts later in the test). */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
