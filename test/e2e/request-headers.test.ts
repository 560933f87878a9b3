import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../helpers/certs.js';
import { rawExchange } from '../helpers/raw-http.js';
import { accessLine, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { h2connect } from '../server/tls-client.js';

/** `routes[].requestHeaders` end to end: a real authorization server, gatehouse, an echo upstream. */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let token: string;

const KEY = '6f1c2b8e-3d4a-4f5b-9c7d-1e2f3a4b5c6d';

const routes = `
routes:
  - name: payments
    path: /payments
    methods: [POST]
    upstream: api
    requestHeaders:
      schema:
        type: object
        properties:
          idempotency-key: { type: string, format: uuid }
          x-tenant-id: { type: string, pattern: "^[a-z0-9-]{3,40}$" }
          x-api-version: { type: integer, minimum: 1, maximum: 3 }
        required: [idempotency-key, x-tenant-id]
`;

const yaml = () => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
${routes}`;

async function send(headers: Record<string, string>) {
  const before = api.requests.length;
  const res = await request(`${gw.url}/payments`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : null, forwarded: api.requests.slice(before) };
}

const good = () => ({ authorization: `Bearer ${token}`, 'idempotency-key': KEY, 'x-tenant-id': 'acme-eu' });

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(yaml());
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

describe('requestHeaders: what is refused, and never reaches the upstream', () => {
  it('no token: 401 first, whatever the headers', async () => {
    const res = await send({ 'x-tenant-id': 'ACME' });
    expect(res.status).toBe(401);
    expect(res.forwarded).toEqual([]);
  });

  it('a required header missing, a value out of shape, text that is not the type: 400 naming the header, never its value', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ authorization: `Bearer ${token}`, 'x-tenant-id': 'acme-eu' }, 'at the top level: the property "idempotency-key" is required'],
      [{ ...good(), 'idempotency-key': 'not-a-uuid-SECRET' }, 'at /idempotency-key: must match format "uuid"'],
      [{ ...good(), 'x-tenant-id': "acme' OR '1'='1" }, 'at /x-tenant-id: must match pattern "^[a-z0-9-]{3,40}$"'],
      [{ ...good(), 'x-api-version': 'latest' }, 'at /x-api-version: must be integer'],
      [{ ...good(), 'x-api-version': '4' }, 'at /x-api-version: must be <= 3'],
    ];
    for (const [headers, reason] of cases) {
      const res = await send(headers);
      expect(res.status, reason).toBe(400);
      expect(res.json).toMatchObject({ code: 'GH_ERR_REQUEST_HEADERS_INVALID', detail: `the request's headers are not accepted: ${reason}` });
      expect(res.forwarded).toEqual([]);
    }
    const line = await accessLine(gw.logs, (await send({ ...good(), 'idempotency-key': 'not-a-uuid-SECRET' })).headers['x-request-id']);
    expect(line).toMatchObject({ status: 400, decision: 'denied', reason: 'GH_ERR_REQUEST_HEADERS_INVALID', route: 'payments' });
    expect(JSON.stringify(gw.logs)).not.toContain('not-a-uuid-SECRET');
  });

  it('a header sent twice where one value is allowed (one server takes the first, another the last): 400', async () => {
    const before = api.requests.length;
    const { all: answer } = await rawExchange(
      gw.url,
      `POST /payments HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nIdempotency-Key: ${KEY}\r\nX-Tenant-Id: acme-eu\r\nX-Tenant-Id: other-tenant\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('at /x-tenant-id: must be string');
    expect(api.requests.length).toBe(before);
  });
});

describe('requestHeaders: what passes', () => {
  it('the headers the schema describes, in any case, with others beside them: forwarded as sent', async () => {
    const res = await send({ ...good(), 'X-Api-Version': '2', 'user-agent': 'payments-client/1.0', 'x-other': 'kept' });
    expect(res.status).toBe(200);
    expect(res.forwarded).toHaveLength(1);
    expect(res.forwarded[0]!.headers).toMatchObject({ 'idempotency-key': KEY, 'x-tenant-id': 'acme-eu', 'x-api-version': '2', 'x-other': 'kept' });
  });

  it('over HTTP/2: pseudo-headers are not headers, a cookie split over lines is one; refused and passed the same way', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('gw', ['127.0.0.1', 'localhost']);
    const h2 = await startTestGateway(`
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } } }
upstreams: [ { name: api, url: ${api.url} } ]
routes:
  - name: strict
    path: /strict
    upstream: api
    public: true
    requestHeaders:
      schema: { type: object, properties: { cookie: { type: string }, x-tenant-id: { type: string } }, required: [x-tenant-id], additionalProperties: false }
`);
    const session = await h2connect(h2.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    const get = (headers: Record<string, string | string[]>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': '/strict', ...headers });
        let body = '';
        let status = 0;
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (d: Buffer) => (body += d.toString()));
        stream.on('close', () => resolve({ status, body }));
        stream.on('error', reject);
        stream.end();
      });
    try {
      const before = api.requests.length;
      const missing = await get({ cookie: ['a=1', 'b=2'] });
      expect(missing.status).toBe(400);
      expect(JSON.parse(missing.body).detail).toContain('the property "x-tenant-id" is required');
      expect(api.requests.length).toBe(before);
      const passed = await get({ cookie: ['a=1', 'b=2'], 'x-tenant-id': 'acme' });
      expect(passed.status).toBe(200);
      expect(api.requests.length).toBe(before + 1);
    } finally {
      session.close();
      await h2.close();
    }
  });
});
