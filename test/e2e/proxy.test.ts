import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import net from 'node:net';
import { Readable } from 'node:stream';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let publicApi: TestUpstream;
let protectedApi: TestUpstream;
let gw: TestGateway;

function config(publicUrl: string, protectedUrl: string, extra = '') {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
limits: { maxBodySize: 1kb, maxHeaderSize: 4kb, headersTimeout: 1s, requestTimeout: 3s }
issuers:
  - name: main
    issuer: http://127.0.0.1:1/never
    jwksUri: http://127.0.0.1:1/jwks
    audiences: [https://api.example.com]
upstreams:
  - { name: pub, url: ${publicUrl} }
  - { name: secret, url: ${protectedUrl} }
  - { name: dead, url: http://127.0.0.1:1, connectTimeout: 1s }
  - { name: pub-xff, url: ${publicUrl}, forwardedHeaders: [x-forwarded-for] }
  - { name: pub-none, url: ${publicUrl}, forwardedHeaders: [] }
routes:
  - { name: xff-only, path: /xff-only, upstream: pub-xff, public: true }
  - { name: no-forwarding, path: /no-forwarding, upstream: pub-none, public: true }
  - { name: public, path: /public, upstream: pub, public: true }
  - { name: public-get, path: /readonly, methods: [GET], upstream: pub, public: true }
  - { name: diag, path: /diag, methods: [TRACE], upstream: pub, public: true }
  - { name: admin, path: /admin, upstream: secret }
  - { name: broken, path: /broken, upstream: dead, public: true }
  - { name: users, path: '/users/{id}/profile', upstream: pub, public: true }
${extra}`;
}

beforeAll(async () => {
  publicApi = await startUpstream();
  protectedApi = await startUpstream();
  gw = await startTestGateway(config(publicApi.url, protectedApi.url));
});

afterAll(async () => {
  await gw?.close();
  await publicApi?.close();
  await protectedApi?.close();
});

/** Send a raw HTTP/1.1 request (undici would normalize the target) and read the status line. */
function raw(target: string, extraHeaders = ''): Promise<{ status: number; text: string }> {
  const { port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      const connection = /^connection:/im.test(extraHeaders) ? '' : 'Connection: close\r\n';
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${connection}${extraHeaders}\r\n`);
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('end', () => resolve({ status: Number(data.split(' ')[1]), text: data }));
    socket.on('error', reject);
  });
}

describe('routing', () => {
  it('proxies a public route and streams the answer back', async () => {
    const res = await request(`${gw.url}/public/items?x=1`);
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { url: string };
    expect(body.url).toBe('/public/items?x=1');
  });

  it('matches on segment boundaries: /publicX is not /public', async () => {
    const res = await request(`${gw.url}/publicX`);
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    const problem = (await res.body.json()) as { code: string; status: number; instance: string };
    expect(problem.code).toBe('GH_ERR_ROUTE_NOT_FOUND');
    expect(problem.status).toBe(404);
    expect(problem.instance).toContain(res.headers['x-request-id'] as string);
  });

  it("marks gatehouse's own answers not to be stored or sniffed", async () => {
    for (const [path, status] of [['/nothing/here', 404], ['/admin/users', 401]] as const) {
      const res = await request(`${gw.url}${path}`);
      expect([status, 503]).toContain(res.statusCode);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      await res.body.dump();
    }
  });

  it('answers 405 with Allow for a method the route does not take', async () => {
    const res = await request(`${gw.url}/readonly`, { method: 'DELETE' });
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
    await res.body.dump();
  });

  it('refuses TRACE on a route that does not list it, and the upstream never sees it', async () => {
    const before = publicApi.requests.length;
    const res = await request(`${gw.url}/public/items`, { method: 'TRACE', headers: { cookie: 'session=secret' } });
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe('DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT');
    expect(res.headers['content-type']).toBe('application/problem+json');
    const text = await res.body.text();
    expect(text).not.toContain('session=secret');
    expect(publicApi.requests.length).toBe(before);
  });

  it('forwards TRACE on a route that lists it', async () => {
    const before = publicApi.requests.length;
    const res = await request(`${gw.url}/diag`, { method: 'TRACE' });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(publicApi.requests.length).toBe(before + 1);
    expect(publicApi.requests.at(-1)!.method).toBe('TRACE');
  });

  it('captures path parameters and matches param segments', async () => {
    const res = await request(`${gw.url}/users/42/profile`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });

  it('never proxies an unmatched request', async () => {
    const before = publicApi.requests.length + protectedApi.requests.length;
    const res = await request(`${gw.url}/nothing/here`);
    expect(res.statusCode).toBe(404);
    await res.body.dump();
    expect(publicApi.requests.length + protectedApi.requests.length).toBe(before);
  });

  it('denies a protected route without a token and the upstream never sees it', async () => {
    const res = await request(`${gw.url}/admin/users`);
    expect([401, 503]).toContain(res.statusCode);
    await res.body.dump();
    expect(protectedApi.requests.length).toBe(0);
  });
});

describe('path safety: the protected upstream is never reached', () => {
  const hostile: [string, string][] = [
    ['dot-dot segments that climb out of a public route', '/public/../admin'],
    ['encoded slash', '/public%2F..%2Fadmin'],
    ['encoded backslash', '/public%5C..%5Cadmin'],
    ['encoded dot segments', '/public/%2e%2e/admin'],
    ['mixed-case encoded dots', '/public/%2E%2e/admin'],
    ['a raw backslash', '/public\\..\\admin'],
    ['invalid percent-encoding', '/public/%zz'],
    ['truncated percent-encoding', '/public/%4'],
    ['an encoded NUL', '/public/%00/admin'],
    ['an absolute-form target for another host', 'http://evil.example.com/admin'],
    ['a dot segment above the root', '/../admin'],
  ];
  for (const [what, target] of hostile) {
    it(`refuses or safely normalizes ${what}`, async () => {
      const before = protectedApi.requests.length;
      const res = await raw(target);
      expect(res.status === 400 || res.status === 401 || res.status === 503 || res.status === 404).toBe(true);
      expect(protectedApi.requests.length).toBe(before);
    });
  }

  it('normalizes duplicate slashes and dot segments and forwards exactly the decided path', async () => {
    const res = await raw('/public//a/./b/../c');
    expect(res.status).toBe(200);
    expect(publicApi.requests.at(-1)!.url).toBe('/public/a/c');
  });

  it('refuses a path that normalizes from public into protected (dot-dot) with 400', async () => {
    const res = await raw('/public/../admin');
    // /admin after normalization would be the protected route: it is routed as /admin, never as /public
    expect([401, 503]).toContain(res.status);
  });

  it('refuses control characters with 400', async () => {
    const res = await raw('/public/a%01b');
    expect(res.status).toBe(400);
  });
});

describe('headers', () => {
  it('drops hop-by-hop headers and those named in Connection, and sets X-Forwarded-* and Forwarded', async () => {
    const res = await raw(
      '/public/h',
      'Connection: close, x-secret-hop\r\nX-Secret-Hop: drop me\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\n' +
        'X-Forwarded-Host: evil.example.com\r\nForwarded: for=6.6.6.6\r\nX-Keep: kept\r\nProxy-Authorization: Basic eA==\r\n',
    );
    expect(res.status).toBe(200);
    const seen = publicApi.requests.at(-1)!.headers;
    expect(seen['x-secret-hop']).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['x-keep']).toBe('kept');
    // The upstream sees its own host, never the client's.
    expect(seen.host).toBe(new URL(publicApi.url).host);
    expect(publicApi.requests.at(-1)!.rawHeaders.filter((_, i) => i % 2 === 0 && _.toLowerCase() === 'host')).toHaveLength(1);
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).not.toBe('evil.example.com');
    expect(seen.forwarded).toBe(`for=127.0.0.1;proto=http;host="${new URL(gw.url).host}"`);
  });

  it("sends an upstream only the forwarding headers it takes (forwardedHeaders), and never the client's own", async () => {
    const spoofed =
      'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example.com\r\nForwarded: for=6.6.6.6\r\n' +
      'X-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 1\r\nX-Keep: kept\r\n';
    // Headers gatehouse never sets: a client's values of them are dropped all the same.
    const neverSent = ['x-real-ip', 'x-forwarded-port'];
    const xffOnly = await raw('/xff-only/h', spoofed);
    expect(xffOnly.status).toBe(200);
    let seen = publicApi.requests.at(-1)!.headers;
    expect(publicApi.requests.at(-1)!.url).toBe('/xff-only/h');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBeUndefined();
    expect(seen['x-forwarded-host']).toBeUndefined();
    expect(seen.forwarded).toBeUndefined();
    for (const name of neverSent) expect(seen[name], name).toBeUndefined();
    expect(seen['x-keep']).toBe('kept');
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);

    const none = await raw('/no-forwarding/h', spoofed);
    expect(none.status).toBe(200);
    seen = publicApi.requests.at(-1)!.headers;
    expect(publicApi.requests.at(-1)!.url).toBe('/no-forwarding/h');
    for (const name of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', ...neverSent]) expect(seen[name], name).toBeUndefined();
    expect(seen['x-keep']).toBe('kept');
    // The request id still goes upstream and back: it is how a log line on each side is matched.
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(none.text).toContain(`x-request-id: ${seen['x-request-id']}`);
  });

  it('creates an X-Request-Id when absent, keeps a sane one, and logs it', async () => {
    const res = await request(`${gw.url}/public/id`);
    await res.body.dump();
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(publicApi.requests.at(-1)!.headers['x-request-id']).toBe(id);
    const res2 = await request(`${gw.url}/public/id`, { headers: { 'x-request-id': 'client-id-1' } });
    await res2.body.dump();
    expect(res2.headers['x-request-id']).toBe('client-id-1');
    // Ids that are not a sane token (spaces, a list, over 128 characters) are replaced: the
    // upstream and the client both get gatehouse's id, never the client's.
    for (const hostile of ['bad id with spaces', 'a,b', 'x'.repeat(129)]) {
      const bad = await request(`${gw.url}/public/id`, { headers: { 'x-request-id': hostile } });
      await bad.body.dump();
      const replaced = bad.headers['x-request-id'] as string;
      expect(replaced).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(publicApi.requests.at(-1)!.headers['x-request-id']).toBe(replaced);
    }
    await new Promise((r) => setTimeout(r, 50));
    const line = gw.logs.find((l) => l.req_id === id);
    expect(line).toMatchObject({ method: 'GET', path: '/public/id', route: 'public', status: 200, decision: 'granted' });
    expect(typeof line!.latency_ms).toBe('number');
    expect(typeof line!.upstream_ms).toBe('number');
  });

  it("answers with the upstream's headers minus hop-by-hop ones, its own request id, and every Set-Cookie", async () => {
    publicApi.setHandler((_req, res) => {
      res.setHeader('x-request-id', 'upstream-made-this-up');
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
      res.setHeader('connection', 'keep-alive, x-upstream-hop');
      res.setHeader('x-upstream-hop', 'must not reach the client');
      res.setHeader('keep-alive', 'timeout=5');
      res.setHeader('vary', 'Accept-Encoding');
      res.setHeader('content-type', 'text/plain');
      res.end('head test');
    });
    try {
      const res = await raw('/public/head', 'X-Request-Id: client-head-1\r\n');
      expect(res.status).toBe(200);
      const head = res.text.slice(0, res.text.indexOf('\r\n\r\n')).toLowerCase();
      expect(head.match(/^x-request-id:.*$/gm)).toEqual(['x-request-id: client-head-1']);
      expect(head.match(/^set-cookie:.*$/gm)).toEqual(['set-cookie: a=1; path=/', 'set-cookie: b=2; path=/']);
      expect(head).not.toContain('x-upstream-hop');
      expect(head).not.toContain('keep-alive: timeout');
      expect(head).toContain('vary: accept-encoding');
      expect(res.text.endsWith('head test')).toBe(true);
    } finally {
      publicApi.setHandler(null);
    }
  });

  it('answers 502 when the upstream sends its head and dies before the body (nothing half-sent)', async () => {
    publicApi.setHandler((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100', 'x-from-upstream': 'yes' });
      res.flushHeaders();
      setTimeout(() => res.socket?.destroy(), 20);
    });
    try {
      const res = await request(`${gw.url}/public/dies`);
      expect(res.statusCode).toBe(502);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers['x-from-upstream']).toBeUndefined();
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(((await res.body.json()) as { code: string }).code).toMatch(/^GH_ERR_UPSTREAM_(FAILED|CONNECT)$/);
    } finally {
      publicApi.setHandler(null);
    }
  });

  it('never writes a token or cookie value to the log', async () => {
    const res = await request(`${gw.url}/admin/x`, { headers: { authorization: 'Bearer secret-token-value', cookie: 'session=secret-cookie-value' } });
    await res.body.dump();
    await new Promise((r) => setTimeout(r, 50));
    const all = JSON.stringify(gw.logs);
    expect(all).not.toContain('secret-token-value');
    expect(all).not.toContain('secret-cookie-value');
  });
});

describe('upstream failures and limits', () => {
  it('answers 502 problem+json when the upstream refuses connections', async () => {
    const res = await request(`${gw.url}/broken`);
    expect(res.statusCode).toBe(502);
    const problem = (await res.body.json()) as { code: string; detail: string };
    expect(problem.code).toBe('GH_ERR_UPSTREAM_CONNECT');
    expect(problem.detail).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
  });

  it('answers 413 for a body over the limit (content-length) without forwarding', async () => {
    const before = publicApi.requests.length;
    const res = await request(`${gw.url}/public/upload`, { method: 'POST', body: 'x'.repeat(2048) });
    expect(res.statusCode).toBe(413);
    await res.body.dump();
    expect(publicApi.requests.length).toBe(before);
  });

  it('answers 413 for a chunked body that grows over the limit', async () => {
    async function* chunks() {
      for (let i = 0; i < 8; i++) yield Buffer.alloc(512, 'y');
    }
    const res = await request(`${gw.url}/public/upload`, { method: 'POST', body: Readable.from(chunks()) });
    expect(res.statusCode).toBe(413);
    await res.body.dump();
  });

  it('streams a body within the limit', async () => {
    const res = await request(`${gw.url}/public/upload`, { method: 'POST', body: 'hello' });
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { body: string }).body).toBe('hello');
  });

  it('answers 431 for headers over the limit', async () => {
    const res = await raw('/public/x', `X-Big: ${'a'.repeat(8000)}\r\n`);
    expect(res.status).toBe(431);
  });

  it('keeps serving others while a slowloris client trickles headers, then cuts it off', async () => {
    const { port } = new URL(gw.url);
    const slow = net.connect(Number(port), '127.0.0.1');
    let closed = false;
    let answer = '';
    slow.on('close', () => (closed = true));
    slow.on('data', (d) => (answer += d.toString()));
    slow.on('error', () => undefined);
    slow.write('GET /public/slow HTTP/1.1\r\nHost: x\r\n');
    const timer = setInterval(() => slow.writable && slow.write('X-A: b\r\n'), 100);
    try {
      for (let i = 0; i < 5; i++) {
        const res = await request(`${gw.url}/public/fast`);
        expect(res.statusCode).toBe(200);
        await res.body.dump();
      }
      await new Promise((r) => setTimeout(r, 2500));
      expect(closed).toBe(true);
      expect(answer).toMatch(/^HTTP\/1.1 408/);
      expect(gw.logs.some((l) => l.reason === 'GH_ERR_REQUEST_TIMEOUT')).toBe(true);
    } finally {
      clearInterval(timer);
      slow.destroy();
    }
  });
});

describe('admin', () => {
  it('exports request counts and durations per route on /metrics, with bounded labels', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await request(`${gw.url}/readonly/m${i}`);
      await res.body.dump();
    }
    const missing = await request(`${gw.url}/no/such/route`);
    await missing.body.dump();
    await new Promise((r) => setTimeout(r, 50));
    const res = await request(`${gw.adminUrl}/metrics`);
    expect(res.statusCode).toBe(200);
    const text = await res.body.text();
    expect(text).toContain('# TYPE gatehouse_requests_total counter');
    expect(text).toMatch(/^gatehouse_requests_total\{route="public-get",status="200"\} 3$/m);
    expect(text).toMatch(/^gatehouse_requests_total\{route="-",status="404"\} \d+$/m);
    expect(text).toContain('# TYPE gatehouse_request_duration_seconds histogram');
    expect(text).toMatch(/^gatehouse_request_duration_seconds_bucket\{le="\+Inf",route="public-get"\} 3$/m);
    expect(text).toMatch(/^gatehouse_request_duration_seconds_count\{route="public-get"\} 3$/m);
    const buckets = [...text.matchAll(/^gatehouse_request_duration_seconds_bucket\{le="[^"]+",route="public-get"\} (\d+)$/gm)].map((m) => Number(m[1]));
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    expect(text).not.toContain('/readonly/m1');
  });

  it("exports each upstream's time to its response head; a failed connection adds nothing", async () => {
    const scrape = async () => (await (await request(`${gw.adminUrl}/metrics`)).body.text());
    const count = (text: string, upstream: string) => Number(new RegExp(`^gatehouse_upstream_duration_seconds_count\\{upstream="${upstream}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const before = await scrape();
    for (let i = 0; i < 3; i++) await (await request(`${gw.url}/readonly/u${i}`)).body.dump();
    const broken = await request(`${gw.url}/broken`);
    await broken.body.dump();
    expect(broken.statusCode).toBe(502);
    const after = await scrape();
    expect(after).toContain('# TYPE gatehouse_upstream_duration_seconds histogram');
    expect(count(after, 'pub') - count(before, 'pub')).toBe(3);
    expect(count(after, 'dead')).toBe(0);
    expect(Number(/^gatehouse_upstream_duration_seconds_sum\{upstream="pub"\} (\S+)$/m.exec(after)?.[1])).toBeGreaterThan(0);
    const buckets = [...after.matchAll(/^gatehouse_upstream_duration_seconds_bucket\{le="[^"]+",upstream="pub"\} (\d+)$/gm)].map((m) => Number(m[1]));
    expect(buckets.length).toBeGreaterThan(1);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    expect(buckets.at(-1)).toBe(count(after, 'pub'));
  });

  it('serves /healthz and /readyz', async () => {
    const health = await request(`${gw.adminUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    expect(health.headers['cache-control']).toBe('no-store');
    expect(health.headers['x-content-type-options']).toBe('nosniff');
    expect(await health.body.json()).toEqual({ status: 'ok' });
    const ready = await request(`${gw.adminUrl}/readyz`);
    expect([200, 503]).toContain(ready.statusCode);
    const body = (await ready.body.json()) as { listeners: string };
    expect(body.listeners).toBe('bound');
  });
});
