import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { jwks, mint, testKey } from '../authn/jwt-fixtures.js';

/**
 * End to end through the real gateway: a path spelled so that gatehouse and the upstream would
 * see two different resources (percent-encoded letters, `;` path parameters) is either decided
 * and forwarded in one spelling, or refused before any upstream sees it. Targets go out on a raw
 * socket: a client library would normalize them first.
 */
const key = testKey('ES256');

let upstream: TestUpstream;
let keys: JwksServer;
let gw: TestGateway;
let lenient: TestGateway;

function config(upstreamUrl: string, jwksUrl: string, extra = ''): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - name: main
    issuer: https://id.example.test
    jwksUri: ${jwksUrl}
    audiences: [https://api.example.test]
    algorithms: [ES256]
upstreams:
  - { name: api, url: ${upstreamUrl} }
routes:
  - { name: order, path: '/orders/{id}', upstream: api, scopes: [orders:read] }
  - { name: export, path: /orders/export, methods: [GET], upstream: api, scopes: [orders:admin] }
  - { name: user-orders, path: '/users/{userId}/orders', upstream: api, claims: [ 'claims.sub == request.params.userId' ] }
  - { name: user-profile, path: '/users/{id}/profile', upstream: api, claims: [ 'claims.sub == request.params.id' ] }
  - { name: admin, path: /admin, upstream: api, scopes: [admin] }
  - { name: public, path: /public, upstream: api, public: true }
  - { name: home, path: /, upstream: api, public: true }
${extra}`;
}

beforeAll(async () => {
  upstream = await startUpstream();
  keys = await startJwksServer(jwks(key));
  gw = await startTestGateway(config(upstream.url, keys.url));
  lenient = await startTestGateway(config(upstream.url, keys.url, 'gateway:\n  paths: { allowSemicolons: true }\n'));
});

afterAll(async () => {
  await gw?.close();
  await lenient?.close();
  await upstream?.close();
  await keys?.close();
});

const token = (scope: string) => mint(key, Date.now(), { scope });

interface Answer {
  status: number;
  code: string | undefined;
  reachedUpstream: boolean;
  /** The target the upstream received, when it received one. */
  seen: string | undefined;
}

/** Send `method target` on a raw HTTP/1.1 connection, with a bearer token when given. */
function send(method: string, target: string, bearer?: string, via: TestGateway = gw): Promise<Answer> {
  const before = upstream.requests.length;
  const { port } = new URL(via.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      const auth = bearer === undefined ? '' : `Authorization: Bearer ${bearer}\r\n`;
      socket.write(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${auth}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    });
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('end', () => {
      const reached = upstream.requests.length > before;
      resolve({
        status: Number(data.split(' ')[1]),
        code: /"code":"([A-Z_]+)"/.exec(data)?.[1],
        reachedUpstream: reached,
        seen: reached ? upstream.requests.at(-1)!.url : undefined,
      });
    });
    socket.on('error', reject);
  });
}

describe('percent-encoded letters are decided and forwarded decoded', () => {
  it('refuses /orders/%65xport to a token without the export scope, and the upstream never sees it', async () => {
    const r = await send('GET', '/orders/%65xport', token('orders:read'));
    expect(r.status).toBe(403);
    expect(r.reachedUpstream).toBe(false);
  });

  it('answers 405 to a POST on /orders/%65xport (export takes GET only), and the upstream never sees it', async () => {
    const r = await send('POST', '/orders/%65xport', token('orders:read orders:admin'));
    expect(r.status).toBe(405);
    expect(r.code).toBe('GH_ERR_ROUTE_METHOD_NOT_ALLOWED');
    expect(r.reachedUpstream).toBe(false);
  });

  it('forwards the decoded path on an allowed request', async () => {
    const exported = await send('GET', '/orders/%65xport?x=%6a', token('orders:admin'));
    expect(exported).toMatchObject({ status: 200, seen: '/orders/export?x=%6a' });
    const one = await send('GET', '/orders/%34%32', token('orders:read'));
    expect(one).toMatchObject({ status: 200, seen: '/orders/42' });
  });

  it('routes /%61dmin under a public / to the admin route and its rules', async () => {
    const anonymous = await send('GET', '/%61dmin');
    expect(anonymous.status).toBe(401);
    expect(anonymous.reachedUpstream).toBe(false);
    const unscoped = await send('GET', '/%61dmin/users', token('orders:read'));
    expect(unscoped.status).toBe(403);
    expect(unscoped.reachedUpstream).toBe(false);
    const admin = await send('GET', '/%61dmin/users', token('admin'));
    expect(admin).toMatchObject({ status: 200, seen: '/admin/users' });
  });

  it('forwards the remaining encodings with uppercase hex', async () => {
    const r = await send('GET', '/public/caf%c3%a9');
    expect(r).toMatchObject({ status: 200, seen: '/public/caf%C3%A9' });
  });

  it('still refuses an encoded dot or slash', async () => {
    for (const target of ['/public/%2e%2e/admin', '/public%2Fadmin']) {
      const r = await send('GET', target, token('admin'));
      expect(r, target).toMatchObject({ status: 400, code: 'GH_ERR_REQUEST_BAD_PATH', reachedUpstream: false });
    }
  });
});

describe('";" path parameters', () => {
  it.each([
    ['/public/..;/admin', 'a dot-dot segment with parameters under a public route'],
    ['/orders/export;x', 'parameters on a literal segment'],
    ['/orders/42;jsessionid=abc', 'parameters on a param segment'],
  ])('refuses %s (%s) with 400 by default, and the upstream never sees it', async (target) => {
    const r = await send('GET', target, token('orders:read orders:admin admin'));
    expect(r).toMatchObject({ status: 400, code: 'GH_ERR_REQUEST_BAD_PATH', reachedUpstream: false });
  });

  it('with allowSemicolons, matches a segment without its parameters and forwards them', async () => {
    const refused = await send('GET', '/orders/export;x', token('orders:read'), lenient);
    expect(refused).toMatchObject({ status: 403, reachedUpstream: false });
    const post = await send('POST', '/orders/export;x', token('orders:read orders:admin'), lenient);
    expect(post).toMatchObject({ status: 405, reachedUpstream: false });
    const allowed = await send('GET', '/orders/export;v=2', token('orders:admin'), lenient);
    expect(allowed).toMatchObject({ status: 200, seen: '/orders/export;v=2' });
  });

  it('with allowSemicolons, still refuses a dot or empty segment with parameters', async () => {
    for (const target of ['/public/..;/admin', '/public/..;x/admin', '/public/.;x/admin', '/public/;x/admin']) {
      const r = await send('GET', target, token('admin'), lenient);
      expect(r, target).toMatchObject({ status: 400, code: 'GH_ERR_REQUEST_BAD_PATH', reachedUpstream: false });
    }
  });
});

describe('route params are named by the route that matched', () => {
  it('lets the owner through on each of two routes that name the same segment differently', async () => {
    const profile = await send('GET', '/users/user-1/profile', token('x'));
    expect(profile).toMatchObject({ status: 200, seen: '/users/user-1/profile' });
    const orders = await send('GET', '/users/user-1/orders', token('x'));
    expect(orders).toMatchObject({ status: 200, seen: '/users/user-1/orders' });
    const other = await send('GET', '/users/user-2/profile', token('x'));
    expect(other).toMatchObject({ status: 403, reachedUpstream: false });
  });
});
