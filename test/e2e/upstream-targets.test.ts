import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { createTestPki } from '../helpers/certs.js';

/** A loopback port nothing listens on (taken, then given back). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An echo server on a given port: `{ server, port, hits }`. */
async function echoOn(port: number, name: string) {
  const hits: { method: string; url: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hits.push({ method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(chunks).toString() });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ name, url: req.url }));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    hits,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const gatewayYaml = (targets: string[], extra = '') => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
  - name: api
    targets: [${targets.join(', ')}]
    connectTimeout: 1s
    timeout: 1s
${extra}
routes:
  - { name: all, path: /, upstream: api, public: true }
`;

async function get(gw: TestGateway, path: string, init: { method?: string; body?: string | Readable; headers?: Record<string, string> } = {}) {
  const res = await request(`${gw.url}${path}`, { method: (init.method ?? 'GET') as 'GET', body: init.body, headers: init.headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : null };
}

const metric = async (gw: TestGateway, line: RegExp) => {
  const text = await (await request(`${gw.adminUrl}/metrics`)).body.text();
  return text.split('\n').find((l) => line.test(l));
};

describe('upstreams[].targets: round robin', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    a = await startUpstream();
    b = await startUpstream();
    gw = await startTestGateway(gatewayYaml([a.url, b.url]));
  });
  afterAll(async () => {
    await gw?.close();
    await a?.close();
    await b?.close();
  });

  it('spreads requests evenly over the targets, each with its own Host', async () => {
    for (let i = 0; i < 10; i++) expect((await get(gw, `/r/${i}`)).status).toBe(200);
    expect(a.requests).toHaveLength(5);
    expect(b.requests).toHaveLength(5);
    expect(a.requests[0]!.headers.host).toBe(new URL(a.url).host);
    // The access log names the instance that answered.
    await new Promise((r) => setTimeout(r, 50));
    const targets = gw.logs.filter((l) => l.msg === 'request' && String(l.path).startsWith('/r/')).map((l) => l.upstream_target);
    expect(targets.filter((t) => t === a.url)).toHaveLength(5);
    expect(targets.filter((t) => t === b.url)).toHaveLength(5);
    expect(b.requests[0]!.headers.host).toBe(new URL(b.url).host);
    expect(await metric(gw, new RegExp(`^gatehouse_upstream_target_up\\{upstream="api",target="${b.url}"\\} 1$`))).toBeDefined();
  });

  it("rewrites a Location on the answering target's own address to the gateway's path", async () => {
    for (const t of [a, b]) {
      t.setHandler((req, res) => {
        res.writeHead(201, { location: `${t.url}/orders/7` });
        res.end();
      });
    }
    try {
      for (let i = 0; i < 2; i++) {
        const res = await get(gw, '/orders', { method: 'POST', body: '{}' });
        expect(res.status).toBe(201);
        expect(res.headers.location).toBe('/orders/7');
      }
    } finally {
      a.setHandler(null);
      b.setHandler(null);
    }
  });
});

describe('upstreams[].targets with weights', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let drained: TestUpstream;
  let gw: TestGateway;
  let aClosed = false;
  beforeAll(async () => {
    a = await startUpstream();
    b = await startUpstream();
    drained = await startUpstream();
    gw = await startTestGateway(gatewayYaml([`{ url: "${a.url}", weight: 3 }`, b.url, `{ url: "${drained.url}", weight: 0 }`]));
  });
  afterAll(async () => {
    await gw?.close();
    if (!aClosed) await a?.close();
    await b?.close();
    await drained?.close();
  });

  it('each target its share (3 : 1), spread out rather than in runs; a drained target (weight 0) gets nothing', async () => {
    const answered: string[] = [];
    for (let i = 0; i < 40; i++) {
      const before = [a.requests.length, b.requests.length];
      expect((await get(gw, `/w/${i}`)).status).toBe(200);
      answered.push(a.requests.length > before[0]! ? 'a' : b.requests.length > before[1]! ? 'b' : '?');
    }
    expect(a.requests).toHaveLength(30);
    expect(b.requests).toHaveLength(10);
    expect(drained.requests).toHaveLength(0);
    // Smooth: never more than three of a's in a row, a b in every four.
    for (let i = 0; i + 4 <= answered.length; i += 4) expect(answered.slice(i, i + 4).sort().join('')).toBe('aaab');
  });

  it("a weighted target that cannot be reached: its requests go to the others, never to the drained one", async () => {
    await a.close();
    aClosed = true;
    const bBefore = b.requests.length;
    for (let i = 0; i < 8; i++) expect((await get(gw, `/down/${i}`)).status).toBe(200);
    expect(b.requests.length - bBefore).toBe(8);
    expect(drained.requests).toHaveLength(0);
    expect(gw.logs.some((l) => l.msg === 'upstream target unreachable; left out of the rotation' && l.target === a.url)).toBe(true);
  });
});

describe('upstreams[].targets: a target that cannot be reached', () => {
  let live: TestUpstream;
  let port: number;
  let gw: TestGateway;
  beforeAll(async () => {
    live = await startUpstream();
    port = await deadPort();
    // The dead target first: the first request tries it.
    gw = await startTestGateway(gatewayYaml([`http://127.0.0.1:${port}`, live.url], '    downFor: 400ms'));
  });
  afterAll(async () => {
    await gw?.close();
    await live?.close();
  });

  it('its request is sent to another target, the body with it (Content-Length and chunked), and it is left out', async () => {
    const first = await get(gw, '/orders', { method: 'POST', body: '{"item":1}', headers: { 'content-type': 'application/json' } });
    expect(first.status).toBe(200);
    expect(live.requests.at(-1)).toMatchObject({ method: 'POST', url: '/orders', body: '{"item":1}' });
    const down = gw.logs.filter((l) => l.msg === 'upstream target unreachable; left out of the rotation');
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({ upstream: 'api', target: `http://127.0.0.1:${port}`, down_for_ms: 400, targets_up: 1 });
    expect(down[0]!.error).toMatch(/ECONNREFUSED/);
    expect(await metric(gw, new RegExp(`^gatehouse_upstream_target_up\\{upstream="api",target="http://127.0.0.1:${port}"\\} 0$`))).toBeDefined();

    // Left out: the next requests go straight to the live target (no second connect failure).
    const chunked = Readable.from([Buffer.from('part one, '), Buffer.from('part two')]);
    expect((await get(gw, '/stream', { method: 'PUT', body: chunked })).status).toBe(200);
    expect(live.requests.at(-1)).toMatchObject({ method: 'PUT', body: 'part one, part two' });
    for (let i = 0; i < 4; i++) expect((await get(gw, `/x/${i}`)).status).toBe(200);
    expect(await metric(gw, /^gatehouse_upstream_connect_failures_total\{upstream="api",target="http:\/\/127\.0\.0\.1:\d+"\} 1$/)).toBeDefined();
    // /readyz says so, and stays ready: gatehouse still serves (and retries elsewhere).
    const ready = await request(`${gw.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(((await ready.body.json()) as { details: { upstreams?: Record<string, string> } }).details.upstreams).toEqual({
      api: `1 of 2 target(s) left out, unreachable: http://127.0.0.1:${port}`,
    });
  });

  it('comes back into the rotation once downFor has passed and it answers', async () => {
    const back = await echoOn(port, 'back');
    try {
      await new Promise((r) => setTimeout(r, 450));
      const names = new Set<string>();
      for (let i = 0; i < 4; i++) {
        const res = await get(gw, `/again/${i}`);
        expect(res.status).toBe(200);
        names.add(res.body.name ?? 'live');
      }
      expect(names).toEqual(new Set(['back', 'live']));
      expect(gw.logs.some((l) => l.msg === 'upstream target reachable again; back in the rotation' && l.target === `http://127.0.0.1:${port}`)).toBe(true);
      expect(await metric(gw, new RegExp(`^gatehouse_upstream_target_up\\{upstream="api",target="http://127.0.0.1:${port}"\\} 1$`))).toBeDefined();
      const ready = (await (await request(`${gw.adminUrl}/readyz`)).body.json()) as { details: { upstreams?: unknown } };
      expect(ready.details.upstreams).toBeUndefined();
    } finally {
      await back.close();
    }
  });
});

describe('upstreams[].targets: what is never sent twice', () => {
  const servers: { close(): Promise<void> }[] = [];
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('a target that takes the request and then drops the connection: 502, not retried on the other (a POST is not repeated)', async () => {
    let seen = 0;
    const dropper = http.createServer((req) => {
      seen++;
      req.socket.destroy();
    });
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    servers.push({ close: () => new Promise<void>((resolve) => dropper.close(() => resolve())) });
    const other = await startUpstream();
    servers.push(other);
    gw = await startTestGateway(gatewayYaml([`http://127.0.0.1:${(dropper.address() as AddressInfo).port}`, other.url]));
    const res = await get(gw, '/payments', { method: 'POST', body: '{"amount":100}' });
    expect(res.status).toBe(502);
    // (A closed socket maps to GH_ERR_UPSTREAM_CONNECT, as on any upstream; the point is that it is not retried.)
    expect(res.body.code).toBe('GH_ERR_UPSTREAM_CONNECT');
    expect(seen).toBe(1);
    expect(other.requests).toHaveLength(0);
    // (Round robin: the next request is the other target's, the one after the dropper's.)
    expect((await get(gw, '/health')).status).toBe(200);
    // Without a body too: the request was written, so it is not sent again.
    const bodiless = await get(gw, '/payments/7/capture', { method: 'POST' });
    expect(bodiless.status).toBe(502);
    expect(seen).toBe(2);
    expect(other.requests.map((r) => r.url)).toEqual(['/health']);
  });

  it('a target that does not answer in time: 504, not retried on the other', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    servers.push({
      close: () =>
        new Promise<void>((resolve) => {
          silent.closeAllConnections();
          silent.close(() => resolve());
        }),
    });
    const other = await startUpstream();
    servers.push(other);
    gw = await startTestGateway(gatewayYaml([`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, other.url]));
    const res = await get(gw, '/slow');
    expect(res.status).toBe(504);
    expect(res.body.code).toBe('GH_ERR_UPSTREAM_TIMEOUT');
    expect(other.requests).toHaveLength(0);
  });

  it('every target unreachable: 502 GH_ERR_UPSTREAM_CONNECT after one try each, and the next request still tries (no hang, no refusal without a try)', async () => {
    const ports = [await deadPort(), await deadPort()];
    gw = await startTestGateway(gatewayYaml(ports.map((p) => `http://127.0.0.1:${p}`)));
    const res = await get(gw, '/orders');
    expect(res.status).toBe(502);
    expect(res.body.code).toBe('GH_ERR_UPSTREAM_CONNECT');
    expect(gw.logs.filter((l) => l.msg === 'upstream target unreachable; left out of the rotation')).toHaveLength(2);
    const again = await get(gw, '/orders');
    expect(again.status).toBe(502);
    const failures = (await (await request(`${gw.adminUrl}/metrics`)).body.text()).split('\n').filter((l) => l.startsWith('gatehouse_upstream_connect_failures_total{'));
    // 2 for the first request, 1 for the second (it tries one target that is left out, and no other: a retry goes only to a target that is up).
    expect(failures.map((l) => Number(l.split(' ').at(-1))).reduce((x, y) => x + y, 0)).toBe(3);
  });
});

describe('upstreams[].retryIdempotent', () => {
  let seen: string[] = [];
  let drop = 0;
  let server: http.Server;
  let gw: TestGateway;
  let strict: TestGateway;
  beforeAll(async () => {
    // Drops the connection of the next `drop` requests after reading them, answers the others.
    server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (drop > 0) {
        drop--;
        req.socket.destroy();
        return;
      }
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const yaml = (retry: boolean) => `
listen: { host: 127.0.0.1, port: 0 }
upstreams: [{ name: api, url: ${url}, retryIdempotent: ${retry} }]
routes: [{ name: all, path: /, upstream: api, public: true }]
`;
    gw = await startTestGateway(yaml(true));
    strict = await startTestGateway(yaml(false));
  });
  afterAll(async () => {
    await gw?.close();
    await strict?.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const status = async (g: TestGateway, method: string, path: string, body?: string) => {
    const res = await request(`${g.url}${path}`, { method: method as 'GET', body });
    await res.body.dump();
    return res.statusCode;
  };

  it('a GET whose connection broke before an answer is sent once more and answered', async () => {
    seen = [];
    drop = 1;
    expect(await status(gw, 'GET', '/items')).toBe(200);
    expect(seen).toEqual(['GET /items', 'GET /items']);
    expect(gw.logs.some((l) => l.msg === 'upstream connection broke before an answer; idempotent request sent again')).toBe(true);
  });

  it('never more than once, never a POST (with a body or without), and not at all without the setting', async () => {
    seen = [];
    drop = 2;
    expect(await status(gw, 'GET', '/twice')).toBe(502);
    expect(seen).toEqual(['GET /twice', 'GET /twice']);
    seen = [];
    drop = 1;
    expect(await status(gw, 'POST', '/pay', '{"amount":1}')).toBe(502);
    drop = 1;
    expect(await status(gw, 'POST', '/capture')).toBe(502);
    expect(seen).toEqual(['POST /pay', 'POST /capture']);
    seen = [];
    drop = 1;
    expect(await status(strict, 'GET', '/items')).toBe(502);
    expect(seen).toEqual(['GET /items']);
    drop = 0;
  });
});

describe('upstreams[].targets over TLS', () => {
  it('a target whose certificate is not trusted is never sent the request: left out, the request goes to a verified one', async () => {
    const pki = await createTestPki();
    const good = await pki.server('good', ['127.0.0.1']);
    const impostor = await pki.selfSigned('impostor', ['127.0.0.1']);
    const heard: string[] = [];
    const serve = (name: string, files: { certFile: string; keyFile: string }) => {
      const server = https.createServer({ cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) }, (req, res) => {
        heard.push(`${name} ${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
        res.end(JSON.stringify({ name }));
      });
      return new Promise<https.Server>((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
    };
    const bad = await serve('impostor', impostor);
    const ok = await serve('good', good);
    const url = (server: https.Server) => `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: api, targets: [${url(bad)}, ${url(ok)}], tls: { ca: ${pki.caFile} } }
routes:
  - { name: all, path: /, upstream: api, public: true }
`);
    try {
      const res = await get(gw, '/secret', { headers: { authorization: 'Bearer not-for-impostors' } });
      expect(res.status).toBe(200);
      expect(res.body.name).toBe('good');
      expect(heard).toEqual(['good GET /secret Bearer not-for-impostors']);
      const down = gw.logs.find((l) => l.msg === 'upstream target unreachable; left out of the rotation');
      expect(down).toMatchObject({ target: url(bad) });
      expect(down!.error).toMatch(/certificate/i);
    } finally {
      await gw.close();
      for (const server of [bad, ok]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }
  });
});
