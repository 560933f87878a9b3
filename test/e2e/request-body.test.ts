import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../helpers/certs.js';
import { rawExchange as rawHttp } from '../helpers/raw-http.js';
import { accessLine, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2connect } from '../server/tls-client.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/** `routes[].requestBody` end to end: a real authorization server, gatehouse, an echo upstream. */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let token: string;
let schemaFile: string;
let openapiFile: string;

const ORDER_SCHEMA = {
  type: 'object',
  properties: {
    sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' },
    qty: { type: 'integer', minimum: 1, maximum: 100 },
    note: { type: 'string', maxLength: 200 },
  },
  required: ['sku', 'qty'],
  additionalProperties: false,
};

const yaml = () => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
  - { name: pair, targets: ["http://127.0.0.1:1", "${api.url}"] }
routes:
  - name: orders
    path: /orders
    upstream: api
    methods: [GET, POST, PUT]
    maxBodySize: 4kb
    requestBody: { schema: ${schemaFile} }
  - name: signup
    path: /signup
    upstream: api
    public: true
    requestBody:
      schema: { type: object, properties: { email: { type: string, format: email } }, required: [email] }
      maxDepth: 4
  - { name: events, path: /events, upstream: api, public: true, requestBody: { required: false } }
  - { name: spread, path: /spread, upstream: pair, public: true, requestBody: {} }
  - { name: pets, path: /pets, upstream: api, public: true, requestBody: { schema: "${openapiFile}#/paths/~1pets/post/requestBody/content/application~1json/schema" } }
`;

const bearer = () => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });

async function post(pathname: string, body: string | Buffer | undefined, headers: Record<string, string> = bearer(), method = 'POST') {
  const before = api.requests.length;
  const res = await request(`${gw.url}${pathname}`, { method: method as 'POST', headers, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : null, forwarded: api.requests.slice(before) };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-body-'));
  schemaFile = path.join(dir, 'order.json');
  writeFileSync(schemaFile, JSON.stringify(ORDER_SCHEMA));
  openapiFile = path.join(dir, 'openapi.yaml');
  writeFileSync(
    openapiFile,
    `openapi: 3.1.0
info: { title: Pets, version: "1.0" }
paths:
  /pets:
    post:
      requestBody:
        content:
          application/json:
            schema: { $ref: '#/components/schemas/Pet' }
components:
  schemas:
    Pet:
      type: object
      properties:
        id: { type: integer, readOnly: true }
        ownerId: { type: string, readOnly: true }
        name: { type: string, minLength: 1 }
      required: [id, ownerId, name]
      additionalProperties: false
`,
  );
  gw = await startTestGateway(yaml());
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

describe('requestBody: what is refused, and never reaches the upstream', () => {
  it('checks the token before reading the body: no token, 401, whatever the body', async () => {
    const res = await post('/orders', '{"sku":', { 'content-type': 'application/json' });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
    expect(res.forwarded).toEqual([]);
  });

  it('a property the schema does not name (mass assignment): 400, the property named', async () => {
    const res = await post('/orders', JSON.stringify({ sku: 'ABC-1234', qty: 2, isAdmin: true }));
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({
      status: 400,
      code: 'GH_ERR_REQUEST_BODY_INVALID',
      detail: 'the request body is not accepted: it does not match the route\'s schema, at the top level: the property "isAdmin" is not allowed',
    });
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.forwarded).toEqual([]);
    const line = await accessLine(gw.logs, res.headers['x-request-id']);
    expect(line).toMatchObject({ status: 400, decision: 'denied', reason: 'GH_ERR_REQUEST_BODY_INVALID', route: 'orders' });
    expect(line.detail).toContain('"isAdmin" is not allowed');
  });

  it('values out of the schema\'s bounds, a missing property, a wrong type: each named by its place', async () => {
    const cases: [unknown, string][] = [
      [{ sku: 'ABC-1234', qty: 0 }, 'at /qty: must be >= 1'],
      [{ sku: 'ABC-1234', qty: 1.5 }, 'at /qty: must be integer'],
      [{ sku: 'abc', qty: 1 }, 'at /sku: must match pattern "^[A-Z]{3}-[0-9]{4}$"'],
      [{ qty: 1 }, 'at the top level: the property "sku" is required'],
      [[{ sku: 'ABC-1234', qty: 1 }], 'at the top level: must be object'],
    ];
    for (const [body, where] of cases) {
      const res = await post('/orders', JSON.stringify(body));
      expect(res.status, where).toBe(400);
      expect(res.json.detail).toBe(`the request body is not accepted: it does not match the route's schema, ${where}`);
      expect(res.forwarded).toEqual([]);
    }
  });

  it('a key twice (the schema would see the last, an upstream parser may take the first): 400', async () => {
    const res = await post('/orders', '{"sku":"ABC-1234","qty":5,"qty":-100}');
    expect(res.status).toBe(400);
    expect(res.json.detail).toBe('the request body is not accepted: the key "qty" appears twice in one object (at /)');
    expect(res.forwarded).toEqual([]);
  });

  it('malformed JSON, invalid UTF-8, a byte-order mark, too deep: 400', async () => {
    const bodies: [string | Buffer, RegExp][] = [
      ['{"sku":"ABC-1234","qty":1', /it is not valid JSON/],
      [Buffer.concat([Buffer.from('{"sku":"ABC-1234","qty":1,"note":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), /it is not valid UTF-8/],
      [Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"sku":"ABC-1234","qty":1}')]), /it is not valid JSON/],
    ];
    for (const [body, reason] of bodies) {
      const res = await post('/orders', body);
      expect(res.status).toBe(400);
      expect(res.json.detail).toMatch(reason);
      expect(res.forwarded).toEqual([]);
    }
    const deep = await post('/signup', JSON.stringify({ email: 'a@example.com', x: { y: { z: { w: { v: 1 } } } } }), { 'content-type': 'application/json' });
    expect(deep.status).toBe(400);
    expect(deep.json.detail).toBe('the request body is not accepted: it nests objects and arrays deeper than 4 levels (at /x/y/z/w)');
    expect((await post('/signup', JSON.stringify({ email: 'a@example.com', x: { y: { z: 1 } } }), { 'content-type': 'application/json' })).status).toBe(200);
  });

  it('a body that is not JSON by its Content-Type: 415, before the body is asked for', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonp', 'application/json; charset=iso-8859-1']) {
      const res = await post('/orders', JSON.stringify({ sku: 'ABC-1234', qty: 1 }), { authorization: `Bearer ${token}`, 'content-type': type });
      expect(res.status, type).toBe(415);
      expect(res.json.code).toBe('GH_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE');
      expect(res.forwarded).toEqual([]);
    }
    const none = await post('/orders', JSON.stringify({ sku: 'ABC-1234', qty: 1 }), { authorization: `Bearer ${token}` });
    expect(none.status).toBe(415);
    expect(none.json.detail).toContain('no Content-Type');
  });

  it('Expect: 100-continue with a Content-Type that is not JSON: 415 at once, no 100 Continue, the connection closed', async () => {
    const answer = await rawExchange(
      `POST /orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n`,
    );
    expect(answer.head).toMatch(/^HTTP\/1\.1 415 /);
    expect(answer.all).not.toContain('100 Continue');
    expect(answer.closed).toBe(true);
  });

  it('a POST without a body where one is required: 400', async () => {
    const res = await post('/orders', undefined, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(400);
    expect(res.json.detail).toBe('the request body is not accepted: a JSON body is required on POST /orders');
    expect(res.forwarded).toEqual([]);
  });

  it('a chunked body over the route\'s maxBodySize: 413, and the HTTP/1.1 connection closed rather than read to its end', async () => {
    const answer = await rawExchange(
      `POST /orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `1000\r\n${'{'.padEnd(4096, ' ')}\r\n1000\r\n${' '.repeat(4096)}\r\n`,
    );
    expect(answer.head).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer.head.toLowerCase()).toContain('connection: close');
    expect(answer.closed).toBe(true);
  });

  it('a format the schema names (email) is checked', async () => {
    const res = await post('/signup', JSON.stringify({ email: 'not an address' }), { 'content-type': 'application/json' });
    expect(res.status).toBe(400);
    expect(res.json.detail).toContain('at /email: must match format "email"');
  });
});

describe('requestBody from an OpenAPI document', () => {
  it('refuses what the document marks readOnly (mass assignment of ownerId), and takes a body without it', async () => {
    const refused = await post('/pets', JSON.stringify({ name: 'Rex', ownerId: 'someone-else' }), { 'content-type': 'application/json' });
    expect(refused.status).toBe(400);
    expect(refused.json.detail).toBe("the request body is not accepted: it does not match the route's schema, at /ownerId: is read-only (readOnly): answers carry it, requests do not");
    expect(refused.forwarded).toEqual([]);
    const passed = await post('/pets', JSON.stringify({ name: 'Rex' }), { 'content-type': 'application/json' });
    expect(passed.status).toBe(200);
    expect(passed.forwarded[0]!.body).toBe('{"name":"Rex"}');
  });
});

describe('requestBody: what passes', () => {
  it('a body that matches reaches the upstream byte for byte, with the token', async () => {
    const text = '{ "sku" : "ABC-1234",\n  "qty": 3, "note": "grüße ✓" }';
    const res = await post('/orders', text);
    expect(res.status).toBe(200);
    expect(res.forwarded).toHaveLength(1);
    expect(res.forwarded[0]!.body).toBe(text);
    expect(res.forwarded[0]!.headers['content-length']).toBe(String(Buffer.byteLength(text)));
    expect(res.forwarded[0]!.headers.authorization).toBe(`Bearer ${token}`);
  });

  it('a chunked body goes upstream whole, with its Content-Length', async () => {
    const text = JSON.stringify({ sku: 'XYZ-0001', qty: 100 });
    const answer = await rawExchange(
      `PUT /orders/7 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/merge-patch+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        `${(10).toString(16)}\r\n${text.slice(0, 10)}\r\n${(text.length - 10).toString(16)}\r\n${text.slice(10)}\r\n0\r\n\r\n`,
    );
    expect(answer.head).toMatch(/^HTTP\/1\.1 200 /);
    const seen = api.requests.at(-1)!;
    expect(seen).toMatchObject({ method: 'PUT', url: '/orders/7', body: text });
    expect(seen.headers['content-length']).toBe(String(text.length));
    expect(seen.headers['transfer-encoding']).toBeUndefined();
  });

  it('Expect: 100-continue with JSON: 100 Continue once granted, then the body is read and checked', async () => {
    const text = JSON.stringify({ sku: 'XYZ-0002', qty: 1 });
    const answer = await rawExchange(
      `POST /orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${text.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n${text}`,
    );
    expect(answer.head).toBe('HTTP/1.1 100 Continue');
    expect(answer.all).toMatch(/\r\n\r\nHTTP\/1\.1 200 /);
    expect(api.requests.at(-1)!.body).toBe(text);
  });

  it('methods not listed go through unread (a GET here)', async () => {
    const res = await post('/orders', undefined, { authorization: `Bearer ${token}` }, 'GET');
    expect(res.status).toBe(200);
    expect(res.forwarded).toHaveLength(1);
  });

  it('without a schema: any well-formed JSON; with required: false, no body too', async () => {
    expect((await post('/events', '[1, "two", {"three": 3}]', { 'content-type': 'application/json' })).status).toBe(200);
    expect((await post('/events', undefined, {})).status).toBe(200);
    const dup = await post('/events', '{"a":1,"a":2}', { 'content-type': 'application/json' });
    expect(dup.status).toBe(400);
    expect(dup.forwarded).toEqual([]);
  });

  it('a checked body is sent to another target when the first cannot be reached (it is in hand, not half read)', async () => {
    const text = JSON.stringify({ event: 'created', id: 42 });
    const first = await post('/spread', text, { 'content-type': 'application/json' });
    const second = await post('/spread', text, { 'content-type': 'application/json' });
    expect([first.status, second.status]).toEqual([200, 200]);
    expect([...first.forwarded, ...second.forwarded].map((r) => r.body)).toEqual([text, text]);
    expect(gw.logs.some((l) => l.msg === 'upstream target unreachable; left out of the rotation')).toBe(true);
  });

  it('a reload reads the schema file again', async () => {
    writeFileSync(schemaFile, JSON.stringify({ ...ORDER_SCHEMA, properties: { ...ORDER_SCHEMA.properties, qty: { type: 'integer', minimum: 1, maximum: 5 } } }));
    try {
      await gw.reload(yaml());
      const res = await post('/orders', JSON.stringify({ sku: 'ABC-1234', qty: 6 }));
      expect(res.status).toBe(400);
      expect(res.json.detail).toContain('at /qty: must be <= 5');
    } finally {
      writeFileSync(schemaFile, JSON.stringify(ORDER_SCHEMA));
      await gw.reload(yaml());
    }
    expect((await post('/orders', JSON.stringify({ sku: 'ABC-1234', qty: 6 }))).status).toBe(200);
  });
});

describe('requestBody over HTTP/2', () => {
  it('checks bodies sent in DATA frames the same way: refused (400, 413) and passed (byte for byte)', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('gw', ['127.0.0.1', 'localhost']);
    const h2 = await startTestGateway(`
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } } }
upstreams: [ { name: api, url: ${api.url} } ]
routes:
  - { name: signup, path: /signup, upstream: api, public: true, maxBodySize: 1kb, requestBody: { schema: { type: object, required: [email], additionalProperties: false, properties: { email: { type: string } } } } }
`);
    const session = await h2connect(h2.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    const send = (chunks: string[]) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/signup', 'content-type': 'application/json' });
        let body = '';
        let status = 0;
        stream.on('response', (headers) => (status = Number(headers[':status'])));
        stream.on('data', (d: Buffer) => (body += d.toString()));
        stream.on('end', () => resolve({ status, body }));
        stream.on('close', () => resolve({ status, body }));
        stream.on('error', reject);
        for (const chunk of chunks) stream.write(chunk);
        stream.end();
      });
    try {
      const before = api.requests.length;
      const refused = await send(['{"email":"a@example.com",', '"role":"admin"}']);
      expect(refused.status).toBe(400);
      expect(JSON.parse(refused.body).detail).toContain('"role" is not allowed');
      expect((await send(['{"email":"', 'a'.repeat(2000), '"}'])).status).toBe(413);
      expect(api.requests.length).toBe(before);
      const passed = await send(['{"email":', '"a@example.com"}']);
      expect(passed.status).toBe(200);
      expect(api.requests.length).toBe(before + 1);
      expect(api.requests.at(-1)!.body).toBe('{"email":"a@example.com"}');
    } finally {
      session.close();
      await h2.close();
    }
  });
});

/** One raw HTTP/1.1 exchange with the gateway. */
const rawExchange = (text: string) => rawHttp(gw.url, text);
