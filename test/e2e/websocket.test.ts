import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwks, mint, testKey } from '../authn/jwt-fixtures.js';
import { createTestPki } from '../helpers/certs.js';
import { rawExchange as rawHttp } from '../helpers/raw-http.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { connect, opened, refused, startWebSocketUpstream, type WebSocketUpstream } from '../helpers/websocket.js';

/**
 * WebSocket connections through gatehouse (routes[].websocket), end to end with the `ws`
 * package on both sides: the handshake is a request like any other (route, token, scopes,
 * limits) and nothing reaches the upstream before it is granted; once the upstream answers 101
 * the bytes flow both ways until a side closes, the route's idle timeout or longest duration
 * passes, the token expires, or gatehouse shuts down.
 */
const key = testKey('ES256');
const other = testKey('ES256', 'attacker');
let keys: JwksServer;
let api: WebSocketUpstream;
let gw: TestGateway;
let ws: string;

const token = (claims: Record<string, unknown> = {}) => mint(key, Date.now(), claims);
const bearer = (claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${token(claims)}` });

function config(extraRoutes = ''): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
# A connection must outlive the request timeouts, which bound its handshake only.
limits: { requestTimeout: 1s, headersTimeout: 1s }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: ${keys.url}, audiences: [https://api.example.test], clockSkew: 0s }
upstreams:
  - { name: api, url: ${api.url} }
  - { name: dead, url: http://127.0.0.1:1 }
routes:
  - { name: chat, path: /chat, upstream: api, scopes: [orders:read], websocket: true }
  - { name: open-chat, path: /lobby, upstream: api, public: true, websocket: { idleTimeout: 1s } }
  - { name: plain, path: /plain, upstream: api, scopes: [orders:read] }
  - { name: refuse, path: /refuse, upstream: api, public: true, websocket: { maxConnections: 1 } }
  - { name: one, path: /one, upstream: api, public: true, websocket: { maxConnections: 1 } }
  - { name: mine, path: /mine, upstream: api, scopes: [orders:read], websocket: { maxConnectionsPerClient: 2 } }
  - { name: byip, path: /byip, upstream: api, public: true, websocket: { maxConnectionsPerClient: 1 } }
  - { name: short, path: /short, upstream: api, public: true, websocket: { maxDuration: 1s } }
  - { name: gone, path: /gone, upstream: api, public: true, websocket: true }
  - { name: small, path: /small, upstream: api, public: true, websocket: { maxMessageSize: 1kb } }
  - { name: chatty, path: /chatty, upstream: api, public: true, websocket: { maxMessageRate: 5 } }
  - { name: dead, path: /dead, upstream: dead, public: true, websocket: true }
  - { name: wrong, path: /wrong-protocol, upstream: api, public: true, websocket: { maxConnections: 1 } }
${extraRoutes}`;
}

beforeAll(async () => {
  keys = await startJwksServer(jwks(key));
  api = await startWebSocketUpstream();
  gw = await startTestGateway(config());
  ws = gw.url.replace(/^http/, 'ws');
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await keys?.close();
});

function closedLine(route: string, reason?: string) {
  return gw.logs.find((l) => l.msg === 'websocket closed' && l.route === route && (reason === undefined || l.reason === reason));
}

async function waitFor<T>(find: () => T | undefined, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined && found !== false) return found;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('refused handshakes never reach the upstream', () => {
  it('no token: 401 with the Bearer challenge', async () => {
    const before = api.handshakes.length;
    const answer = refused(await connect(`${ws}/chat`));
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toMatch(/^Bearer realm="gatehouse"/);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(api.handshakes.length).toBe(before);
  });

  it('a forged token: 401 invalid_token', async () => {
    const before = api.handshakes.length;
    const forged = mint(other, Date.now(), {}, { kid: key.kid });
    const answer = refused(await connect(`${ws}/chat`, { headers: { authorization: `Bearer ${forged}` } }));
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(api.handshakes.length).toBe(before);
  });

  it('a token without the scope: 403 insufficient_scope', async () => {
    const before = api.handshakes.length;
    const answer = refused(await connect(`${ws}/chat`, { headers: bearer({ scope: 'profile' }) }));
    expect(answer.status).toBe(403);
    expect(answer.headers['www-authenticate']).toContain('error="insufficient_scope"');
    expect(api.handshakes.length).toBe(before);
  });

  it('a route without websocket: 400 GH_ERR_WEBSOCKET_NOT_ALLOWED, after the token was checked', async () => {
    const before = api.handshakes.length + api.plain.length;
    expect(refused(await connect(`${ws}/plain`)).status).toBe(401);
    const answer = refused(await connect(`${ws}/plain`, { headers: bearer() }));
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_WEBSOCKET_NOT_ALLOWED');
    expect(answer.headers.connection).toBe('close');
    expect(api.handshakes.length + api.plain.length).toBe(before);
  });

  it('an unmatched path: 404', async () => {
    const answer = refused(await connect(`${ws}/nowhere`, { headers: bearer() }));
    expect(answer.status).toBe(404);
  });
});

describe('an accepted connection', () => {
  it('carries messages both ways, with the validated token and forwarding headers upstream', async () => {
    const t = token();
    const socket = opened(await connect(`${ws}/chat/room-1?x=1`, { headers: { authorization: `Bearer ${t}` }, protocols: ['chat.v2'] }));
    expect(socket.headers['x-request-id']).toMatch(/\S/);
    expect(socket.headers['sec-websocket-protocol']).toBe('chat.v2');
    socket.ws.send('hello');
    expect(await socket.next()).toBe('echo:hello');
    socket.ws.send('headers');
    const seen = JSON.parse(await socket.next()) as Record<string, string>;
    expect(seen.authorization).toBe(`Bearer ${t}`);
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-request-id']).toBe(socket.headers['x-request-id']);
    expect(seen.upgrade).toBe('websocket');
    const handshake = api.handshakes.at(-1)!;
    expect(handshake.url).toBe('/chat/room-1?x=1');
    // binary frames of any size go through untouched
    const big = Buffer.alloc(256 * 1024, 7);
    socket.ws.send(big);
    const back = await new Promise<Buffer>((r) => socket.ws.once('message', (d) => r(d as Buffer)));
    expect(Buffer.compare(back, big)).toBe(0);
    socket.ws.close(1000, 'bye');
    expect((await socket.closed).code).toBe(1000);
    const line = await waitFor(() => gw.logs.find((l) => l.msg === 'websocket closed' && l.req_id === socket.headers['x-request-id']));
    expect(['client-closed', 'upstream-closed']).toContain(line.reason);
    expect(line.sub).toBe('user-1');
    expect(line.bytes_from_client).toBeGreaterThan(256 * 1024);
    expect(line.bytes_to_client).toBeGreaterThan(256 * 1024);
    // the handshake's own access-log line: 101, granted, not aborted
    const access = gw.logs.find((l) => l.msg === 'request' && l.req_id === socket.headers['x-request-id']);
    expect(access).toMatchObject({ status: 101, route: 'chat', granted: true });
    expect(access?.aborted).toBeUndefined();
  });

  it('outlives limits.requestTimeout and headersTimeout (they bound the handshake, not the connection)', async () => {
    const socket = opened(await connect(`${ws}/chat`, { headers: bearer() }));
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 500));
      socket.ws.send(`tick ${i}`);
      expect(await socket.next()).toBe(`echo:tick ${i}`);
    }
    socket.ws.close();
    expect((await socket.closed).code).toBe(1005);
  });

  it('a public route takes no token', async () => {
    const socket = opened(await connect(`${ws}/lobby`));
    socket.ws.send('hi');
    expect(await socket.next()).toBe('echo:hi');
    socket.ws.close();
    await socket.closed;
  });

  it('the upstream refusing the handshake: its answer goes back, and the place on the route is given back', async () => {
    for (let i = 0; i < 3; i++) {
      const answer = refused(await connect(`${ws}/refuse`));
      expect(answer.status).toBe(403);
      expect(answer.headers['x-request-id']).toMatch(/\S/);
    }
  });

  it('the upstream closing: the client gets its close frame', async () => {
    const socket = opened(await connect(`${ws}/gone`));
    const closed = await socket.closed;
    expect(closed).toEqual({ code: 4000, reason: 'upstream went away' });
    expect((await waitFor(() => closedLine('gone'))).reason).toMatch(/closed$/);
  });

  it('a 101 that switches to another protocol: 502, the sockets never joined, the place given back', async () => {
    for (let i = 0; i < 2; i++) {
      const answer = refused(await connect(`${ws}/wrong-protocol`));
      expect(answer.status).toBe(502);
      expect(JSON.parse(answer.body).code).toBe('GH_ERR_UPSTREAM_FAILED');
    }
    const line = await waitFor(() => gw.logs.find((l) => l.route === 'wrong' && l.status === 502));
    expect(line.detail).toMatch(/101 and upgrade: h2c/);
    expect(gw.logs.some((l) => l.msg === 'websocket closed' && l.route === 'wrong')).toBe(false);
  });

  it('a dead upstream: 502', async () => {
    const answer = refused(await connect(`${ws}/dead`));
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_UPSTREAM_CONNECT');
  });
});

describe('bounds', () => {
  it('maxConnections: 503 while the route is full, a place again once a connection ends', async () => {
    const first = opened(await connect(`${ws}/one`));
    const answer = refused(await connect(`${ws}/one`));
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_WEBSOCKET_LIMIT_EXCEEDED');
    expect(answer.headers['retry-after']).toBe('1');
    first.ws.close();
    await first.closed;
    await waitFor(() => closedLine('one'));
    const again = opened(await connect(`${ws}/one`));
    again.ws.close();
    await again.closed;
  });

  it('maxConnectionsPerClient: one user (the token\'s subject) is held to it, and another user still gets in', async () => {
    const alice = [opened(await connect(`${ws}/mine`, { headers: bearer() })), opened(await connect(`${ws}/mine`, { headers: bearer({ jti: 'other-token' }) }))];
    const before = api.handshakes.length;
    const third = refused(await connect(`${ws}/mine`, { headers: bearer({ jti: 'third-token' }) }));
    expect(third.status).toBe(503);
    expect(JSON.parse(third.body).code).toBe('GH_ERR_WEBSOCKET_LIMIT_EXCEEDED');
    expect((await waitFor(() => gw.logs.find((l) => l.route === 'mine' && l.status === 503))).detail).toMatch(/2 open for this client \(subject\)/);
    expect(api.handshakes.length).toBe(before);
    const bob = opened(await connect(`${ws}/mine`, { headers: bearer({ sub: 'user-2' }) }));
    for (const s of [...alice, bob]) {
      s.ws.close();
      await s.closed;
    }
    await waitFor(() => gw.logs.filter((l) => l.msg === 'websocket closed' && l.route === 'mine').length === 3 || undefined);
    const again = opened(await connect(`${ws}/mine`, { headers: bearer() }));
    again.ws.close();
    await again.closed;
  });

  it('maxConnectionsPerClient without a token counts per address', async () => {
    const first = opened(await connect(`${ws}/byip`));
    const second = refused(await connect(`${ws}/byip`));
    expect(second.status).toBe(503);
    expect((await waitFor(() => gw.logs.find((l) => l.route === 'byip' && l.status === 503))).detail).toMatch(/for this client \(address\)/);
    first.ws.close();
    await first.closed;
  });

  it('each open connection holds one of the listener\'s limits.maxConnections until it closes', async () => {
    const own = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
limits: { maxConnections: 2 }
upstreams: [{ name: api, url: ${api.url} }]
routes: [{ name: lobby, path: /lobby, upstream: api, public: true, websocket: true }]
`);
    try {
      const url = `${own.url.replace(/^http/, 'ws')}/lobby`;
      const held = [opened(await connect(url)), opened(await connect(url))];
      await expect(connect(url)).rejects.toThrow(/socket hang up|ECONNRESET/);
      for (const socket of held) {
        socket.ws.close();
        await socket.closed;
      }
      // The place comes back once the client's socket has closed (the log line may come first).
      let again: Awaited<ReturnType<typeof connect>> | undefined;
      for (let i = 0; i < 50 && again === undefined; i++) {
        again = await connect(url).catch(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), 50)));
      }
      const reopened = opened(again!);
      reopened.ws.close();
      await reopened.closed;
    } finally {
      await own.close();
    }
  });

  it('idleTimeout: a connection with no traffic is closed, with 1001 to the client and to the upstream', async () => {
    const socket = opened(await connect(`${ws}/lobby`));
    const closed = await socket.closed;
    expect(closed).toEqual({ code: 1001, reason: 'idle timeout' });
    expect((await waitFor(() => api.closes.find((c) => c.url === '/lobby' && c.code === 1001)))?.reason).toBe('going away');
    expect((await waitFor(() => closedLine('open-chat', 'idle-timeout'))).duration_ms).toBeGreaterThanOrEqual(900);
  });

  it('maxDuration: a busy connection is cut all the same', async () => {
    const socket = opened(await connect(`${ws}/short`));
    const timer = setInterval(() => socket.ws.readyState === socket.ws.OPEN && socket.ws.send('ping'), 100);
    const closed = await socket.closed;
    clearInterval(timer);
    expect(closed).toEqual({ code: 1001, reason: 'maximum duration reached' });
    await waitFor(() => closedLine('short', 'max-duration'));
  });

  it('the token expiring cuts the connection (exp + clock skew, here 0)', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const socket = opened(await connect(`${ws}/chat`, { headers: bearer({ exp }) }));
    socket.ws.send('still here');
    expect(await socket.next()).toBe('echo:still here');
    const closed = await socket.closed;
    expect(closed).toEqual({ code: 1008, reason: 'token expired' });
    const line = await waitFor(() => closedLine('chat', 'token-expired'));
    expect(line.sub).toBe('user-1');
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
  });
});

describe('maxMessageRate', () => {
  it('a client over its message rate is closed with 1008; the upstream gets what came within the rate, then 1001', async () => {
    const socket = opened(await connect(`${ws}/chatty`));
    const before = api.received.filter((m) => m.startsWith('flood')).length;
    for (let i = 0; i < 20; i++) socket.ws.send(`flood ${i}`);
    expect(await socket.closed).toEqual({ code: 1008, reason: 'message rate exceeded' });
    const line = await waitFor(() => closedLine('chatty', 'message-rate'));
    expect(line.reason).toBe('message-rate');
    expect((await waitFor(() => api.closes.find((c) => c.url === '/chatty')))?.code).toBe(1001);
    // At most the bucket (5) and what it refilled meanwhile went on; never all 20.
    const through = api.received.filter((m) => m.startsWith('flood')).length - before;
    expect(through).toBeGreaterThanOrEqual(5);
    expect(through).toBeLessThan(20);
  });

  it('a client within its rate stays open, pings and fragments counted as the RFC frames them', async () => {
    const socket = opened(await connect(`${ws}/chatty`));
    for (let i = 0; i < 3; i++) {
      socket.ws.send(`calm ${i}`);
      expect(await socket.next()).toBe(`echo:calm ${i}`);
    }
    // One message in four fragments costs one frame of the rate (continuations are free), a ping one.
    socket.ws.send('x', { fin: false });
    socket.ws.send('y', { fin: false });
    socket.ws.send('z', { fin: false });
    socket.ws.send('!', { fin: true });
    expect(await socket.next()).toBe('echo:xyz!');
    expect(socket.ws.readyState).toBe(socket.ws.OPEN);
    socket.ws.close(1000);
    expect((await socket.closed).code).toBe(1000);
  });
});

describe('maxMessageSize', () => {
  it('a message over the limit closes the connection with 1009 and never reaches the upstream; smaller ones do', async () => {
    const socket = opened(await connect(`${ws}/small`));
    socket.ws.send('a'.repeat(1024));
    expect(await socket.next()).toBe(`echo:${'a'.repeat(1024)}`);
    socket.ws.send('b'.repeat(1025));
    expect(await socket.closed).toEqual({ code: 1009, reason: 'message too big' });
    await waitFor(() => closedLine('small', 'message-too-big'));
    expect(api.received.some((m) => m.startsWith('b'))).toBe(false);
    expect((await waitFor(() => api.closes.find((c) => c.url === '/small')))?.code).toBe(1001);
  });

  it('counts a message over its fragments, control frames between them aside', async () => {
    const socket = opened(await connect(`${ws}/small`));
    const before = api.received.length;
    socket.ws.send('c'.repeat(400), { fin: false });
    socket.ws.ping('between fragments');
    socket.ws.send('c'.repeat(400), { fin: false });
    socket.ws.send('c'.repeat(400), { fin: true });
    expect((await socket.closed).code).toBe(1009);
    expect(api.received.length).toBe(before);
  });

  it('binary messages too, of any size under the limit, in many frames', async () => {
    const socket = opened(await connect(`${ws}/small`));
    for (let i = 0; i < 50; i++) socket.ws.send(Buffer.alloc(1000, i));
    let got = 0;
    await new Promise<void>((resolve) =>
      socket.ws.on('message', () => {
        if (++got === 50) resolve();
      }),
    );
    socket.ws.close(1000);
    expect((await socket.closed).code).toBe(1000);
  });
});

describe('other upgrades, while routes take WebSockets', () => {
  it('an h2c upgrade is served as a plain request, then the connection closes', async () => {
    const answer = await rawExchange(`GET /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nAuthorization: Bearer ${token()}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer.toLowerCase()).toContain('connection: close');
    const seen = api.plain.at(-1)!;
    expect(seen.url).toBe('/plain');
    expect(seen.headers.upgrade).toBeUndefined();
    expect(seen.headers['http2-settings']).toBeUndefined();
  });

  it('an upgrade request with a body: 400 GH_ERR_REQUEST_UPGRADE_WITH_BODY, nothing forwarded', async () => {
    const before = api.plain.length + api.handshakes.length;
    const answer = await rawExchange(`POST /lobby HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('GH_ERR_REQUEST_UPGRADE_WITH_BODY');
    expect(api.plain.length + api.handshakes.length).toBe(before);
  });

  it('a WebSocket upgrade on a POST: 400, nothing forwarded', async () => {
    const before = api.plain.length + api.handshakes.length;
    const answer = await rawExchange(`POST /lobby HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('GH_ERR_WEBSOCKET_NOT_ALLOWED');
    expect(api.plain.length + api.handshakes.length).toBe(before);
  });

  it('a client that resets the connection during the handshake does not take the process down', async () => {
    const socket = net.connect(Number(new URL(gw.url).port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(`GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${token()}\r\n\r\n`);
    socket.resetAndDestroy();
    const socket2 = opened(await connect(`${ws}/lobby`));
    socket2.ws.close();
    await socket2.closed;
  });
});

describe('over TLS', () => {
  it('wss:// on an HTTPS listener (HTTP/2 with the HTTP/1.1 fallback), with HSTS on the 101', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('gw');
    const own = await startTestGateway(`
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
upstreams: [{ name: api, url: ${api.url} }]
routes:
  - { name: lobby, path: /lobby, upstream: api, public: true, websocket: true }
  - { name: plain, path: /plain, upstream: api, public: true }
`);
    try {
      const url = own.url.replace(/^https/, 'wss');
      const socket = opened(await connect(`${url}/lobby`, { ca: pki.ca.certPem }));
      expect(socket.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      socket.ws.send('secure');
      expect(await socket.next()).toBe('echo:secure');
      socket.ws.send('headers');
      expect(JSON.parse(await socket.next())['x-forwarded-proto']).toBe('https');
      socket.ws.close();
      await socket.closed;
      const answer = refused(await connect(`${url}/plain`, { ca: pki.ca.certPem }));
      expect(answer.status).toBe(400);
      expect(answer.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    } finally {
      await own.close();
    }
  });
});

describe('to a TLS upstream', () => {
  it('opens over verified TLS (upstreams[].tls.ca), and refuses an upstream whose certificate is not trusted', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('ws-upstream');
    const secure = await startWebSocketUpstream({ tls: { cert: cert.certPem, key: cert.keyPem } });
    const own = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: trusted, url: ${secure.url}, tls: { ca: ${pki.caFile} } }
  - { name: untrusted, url: ${secure.url} }
routes:
  - { name: trusted, path: /trusted, upstream: trusted, public: true, websocket: true }
  - { name: untrusted, path: /untrusted, upstream: untrusted, public: true, websocket: true }
`);
    try {
      const url = own.url.replace(/^http/, 'ws');
      const socket = opened(await connect(`${url}/trusted`));
      socket.ws.send('over tls');
      expect(await socket.next()).toBe('echo:over tls');
      socket.ws.close();
      await socket.closed;
      const before = secure.handshakes.length;
      const answer = refused(await connect(`${url}/untrusted`));
      expect(answer.status).toBe(502);
      expect(JSON.parse(answer.body).code).toBe('GH_ERR_UPSTREAM_CONNECT');
      expect(secure.handshakes.length).toBe(before);
    } finally {
      await own.close();
      await secure.close();
    }
  });
});

describe('reload and shutdown', () => {
  it('a reload that drops websocket from a route refuses new handshakes and leaves open connections alone', async () => {
    const open = opened(await connect(`${ws}/chat`, { headers: bearer() }));
    await gw.reload(config().replace('scopes: [orders:read], websocket: true }', 'scopes: [orders:read] }'));
    try {
      const answer = refused(await connect(`${ws}/chat`, { headers: bearer() }));
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body).code).toBe('GH_ERR_WEBSOCKET_NOT_ALLOWED');
      open.ws.send('after reload');
      expect(await open.next()).toBe('echo:after reload');
      // a config with no websocket route at all: node serves upgrades as plain requests, and they are refused the same way
      await gw.reload(config().replace(/, websocket: (true|\{[^}]*\})/g, ''));
      const none = refused(await connect(`${ws}/lobby`));
      expect(none.status).toBe(400);
      expect(JSON.parse(none.body).code).toBe('GH_ERR_WEBSOCKET_NOT_ALLOWED');
    } finally {
      await gw.reload(config());
    }
    const back = opened(await connect(`${ws}/chat`, { headers: bearer() }));
    back.ws.close();
    await back.closed;
    open.ws.close();
    await open.closed;
  });

  it('shutdown closes open connections', async () => {
    const own = await startTestGateway(config());
    const socket = opened(await connect(`${own.url.replace(/^http/, 'ws')}/lobby`));
    await own.close();
    const closed = await socket.closed;
    expect(closed).toEqual({ code: 1001, reason: 'going away' });
    expect(own.logs.find((l) => l.msg === 'websocket closed')?.reason).toBe('shutdown');
  });
});

/** One request on a raw socket; resolves with everything the gateway sent until it closed. */
const rawExchange = async (text: string) => (await rawHttp(gw.url, text, 10_000)).all;

describe('with allowFrom, targets and hosts', () => {
  let own: TestGateway;
  let ownWs: string;
  let deadPort: number;
  beforeAll(async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    own = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: api, url: ${api.url} }
  - { name: pair, targets: [http://127.0.0.1:${deadPort}, ${api.url}] }
routes:
  - { name: office, path: /office, upstream: api, public: true, websocket: true, allowFrom: [127.0.0.2] }
  - { name: spread, path: /spread, upstream: pair, public: true, websocket: true }
  - { name: hosted, path: /hosted, upstream: api, public: true, websocket: true, hosts: [chat.example.com] }
`);
    ownWs = own.url.replace(/^http/, 'ws');
  });
  afterAll(async () => {
    await own?.close();
  });

  it('a handshake from an address outside allowFrom: 403 before the upstream; from a listed one it opens', async () => {
    const before = api.handshakes.length;
    const answer = refused(await connect(`${ownWs}/office`, { localAddress: '127.0.0.1' }));
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body).code).toBe('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED');
    expect(api.handshakes.length).toBe(before);
    const socket = opened(await connect(`${ownWs}/office`, { localAddress: '127.0.0.2' }));
    socket.ws.send('hi');
    expect(await socket.next()).toBe('echo:hi');
    socket.ws.close();
  });

  it('a handshake whose first target cannot be reached opens through the next one', async () => {
    const socket = opened(await connect(`${ownWs}/spread`));
    socket.ws.send('through');
    expect(await socket.next()).toBe('echo:through');
    socket.ws.close();
    expect(own.logs.some((l) => l.msg === 'upstream target unreachable; left out of the rotation' && l.target === `http://127.0.0.1:${deadPort}`)).toBe(true);
  });

  it('a handshake through another host than the route names is not routed (404)', async () => {
    expect(refused(await connect(`${ownWs}/hosted`, { headers: { host: 'other.example.com' } })).status).toBe(404);
    const socket = opened(await connect(`${ownWs}/hosted`, { headers: { host: 'chat.example.com' } }));
    socket.ws.close();
  });
});
