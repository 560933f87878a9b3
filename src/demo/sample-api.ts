/**
 * The demo's sample API: a few JSON routes that answer with who called them. It trusts
 * gatehouse in front of it, so it decodes the forwarded bearer JWT's payload WITHOUT verifying it,
 * only to show what arrived (a real API keeps validating JWTs, see docs/demo.md).
 *
 * Routes (under any path prefix, so `/opaque/orders` works as `/orders`):
 * - `GET /health` → `{ status: "ok" }`
 * - `GET /orders` → `{ orders, caller }`
 * - `GET /orders/{id}` → `{ order, caller }` or 404
 * - `POST /orders` → 201 `{ order, caller }` (the JSON body becomes the order)
 * - `GET /users/{userId}/orders` → `{ userId, orders, caller }`: that user's orders (for ownership
 *   rules such as `request.params.userId == claims.sub`)
 *
 * `caller` is `{ token: 'jwt' | 'opaque' | null, claims, headers }`: the decoded JWT payload when the
 * bearer token is a JWT, and the `x-request-id`, `x-forwarded-*`, `forwarded` and `x-auth-*`
 * headers gatehouse set.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A running sample API.
 *
 * @example
 * ```ts
 * const api = await startSampleApi();
 * const res = await fetch(`${api.url}/health`); // 200 {"status":"ok"}
 * await api.close();
 * ```
 */
export interface SampleApi {
  /** Base URL, e.g. `http://127.0.0.1:9001`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * What the sample API tells a caller about itself.
 *
 * @example
 * ```ts
 * const { caller } = (await (await fetch(`${api.url}/orders`, { headers })).json()) as { caller: Caller };
 * // caller.token === 'jwt'; caller.claims?.sub === 'demo-client'
 * ```
 */
export interface Caller {
  token: 'jwt' | 'opaque' | null;
  claims: Record<string, unknown> | null;
  headers: Record<string, string>;
}

interface Order {
  id: string;
  item: string;
  quantity: number;
  owner: string;
  [key: string]: unknown;
}

const MAX_BODY = 64 * 1024;
const ORDERS_PATH = /^(?:\/[^/]+)*?\/orders(?:\/([^/]+))?\/?$/;
const HEALTH_PATH = /^(?:\/[^/]+)*?\/health\/?$/;
const USER_ORDERS_PATH = /^(?:\/[^/]+)*?\/users\/([^/]+)\/orders\/?$/;
const ECHOED_HEADER = /^(x-request-id|x-forwarded-.+|forwarded|x-auth-.+)$/;

/**
 * Starts the sample API on loopback (`127.0.0.1`, port 0 by default).
 *
 * @example
 * ```ts
 * const api = await startSampleApi({ port: 9001 });
 * // GET http://127.0.0.1:9001/orders with "Authorization: Bearer <jwt>"
 * //   → { orders: [...], caller: { token: 'jwt', claims: { sub: 'demo-client', … }, headers: {…} } }
 * await api.close();
 * ```
 */
export async function startSampleApi(options: { port?: number; host?: string } = {}): Promise<SampleApi> {
  const orders: Order[] = [
    { id: '1', item: 'espresso beans', quantity: 2, owner: 'demo-client' },
    { id: '2', item: 'oat milk', quantity: 6, owner: 'demo-admin' },
    { id: '3', item: 'paper filters', quantity: 100, owner: 'alice' },
  ];
  let nextId = orders.length + 1;

  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);

    if (HEALTH_PATH.test(path)) return send(res, 200, { status: 'ok' });

    // HEAD is GET without the body (node leaves the body out of a HEAD answer itself).
    const read = req.method === 'GET' || req.method === 'HEAD';
    const user = USER_ORDERS_PATH.exec(path);
    if (user) {
      if (!read) {
        res.setHeader('allow', 'GET, HEAD');
        return send(res, 405, { error: 'method_not_allowed' });
      }
      const userId = safeDecode(user[1]!);
      return send(res, 200, { userId, orders: orders.filter((o) => o.owner === userId), caller: callerOf(req) });
    }

    const match = ORDERS_PATH.exec(path);
    if (!match) return send(res, 404, { error: 'not_found', path });
    const caller = callerOf(req);
    const id = match[1];

    if (id === undefined && read) return send(res, 200, { orders, caller });
    if (id !== undefined && read) {
      const order = orders.find((o) => o.id === id);
      return order ? send(res, 200, { order, caller }) : send(res, 404, { error: 'not_found', id, caller });
    }
    if (id === undefined && req.method === 'POST') {
      readJson(req).then(
        (body) => {
          const order: Order = {
            item: 'unnamed',
            quantity: 1,
            ...body,
            id: String(nextId++),
            owner: typeof caller.claims?.['sub'] === 'string' ? caller.claims['sub'] : 'anonymous',
          };
          orders.push(order);
          send(res, 201, { order, caller });
        },
        (err: Error) => {
          if (err instanceof BodyTooLarge) {
            // Answer at once and read the rest of the body into the void (what nginx calls a
            // lingering close): closing with the body still arriving resets the connection, and
            // a client still sending (the gateway's upstream request) may see the reset first.
            req.resume();
            return send(res, 413, { error: 'invalid_request', error_description: err.message });
          }
          send(res, 400, { error: 'invalid_request', error_description: err.message });
        },
      );
      return;
    }
    res.setHeader('allow', id === undefined ? 'GET, HEAD, POST' : 'GET, HEAD');
    return send(res, 405, { error: 'method_not_allowed' });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host ?? '127.0.0.1';
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function callerOf(req: http.IncomingMessage): Caller {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (ECHOED_HEADER.test(name) && value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const auth = req.headers.authorization;
  if (!auth || !/^bearer /i.test(auth)) return { token: null, claims: null, headers };
  const token = auth.slice(7).trim();
  const parts = token.split('.');
  if (parts.length !== 3) return { token: 'opaque', claims: null, headers };
  try {
    // Demo only: no signature check here, gatehouse verified the token before forwarding it.
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    return { token: 'jwt', claims, headers };
  } catch {
    return { token: 'opaque', claims: null, headers };
  }
}

class BodyTooLarge extends Error {}

function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > MAX_BODY) return reject(new BodyTooLarge(`the body is over ${MAX_BODY} bytes`));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        // Stop collecting; the caller answers 413 and discards the rest.
        req.removeAllListeners('data');
        reject(new BodyTooLarge(`the body is over ${MAX_BODY} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('expected a JSON object');
        resolve(value as Record<string, unknown>);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
