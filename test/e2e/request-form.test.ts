import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLine, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * `requestBody.mediaTypes: [form]` end to end: application/x-www-form-urlencoded bodies read as
 * every parser reads them and checked against the route's schema, with the real authorization
 * server, gatehouse and an echo upstream.
 */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let token: string;
let openapiFile: string;

const FORM = 'application/x-www-form-urlencoded';

const yaml = () => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
routes:
  - name: transfer
    path: /transfers
    upstream: api
    methods: [POST]
    maxBodySize: 2kb
    requestBody:
      mediaTypes: [form]
      schema:
        type: object
        properties:
          to: { type: string, pattern: "^[A-Z]{2}[0-9]{2}[A-Z0-9]{4,30}$" }
          amount: { type: integer, minimum: 1, maximum: 10000 }
          memo: { type: string, maxLength: 140 }
          tags: { type: array, items: { enum: [rent, food, travel] }, maxItems: 3 }
          confirm: { type: boolean }
        required: [to, amount]
        additionalProperties: false
  - name: both
    path: /profile
    upstream: api
    public: true
    requestBody:
      mediaTypes: [json, form]
      schema: { type: object, properties: { name: { type: string, minLength: 1 }, age: { type: integer, minimum: 0 } }, required: [name], additionalProperties: false }
  - { name: anyform, path: /anyform, upstream: api, public: true, requestBody: { mediaTypes: [form], required: false } }
  - name: pets
    path: /pets
    upstream: api
    public: true
    requestBody: { mediaTypes: [form], schema: "${openapiFile}#/paths/~1pets/post/requestBody/content/application~1x-www-form-urlencoded/schema" }
`;

const bearer = (type = FORM) => ({ authorization: `Bearer ${token}`, 'content-type': type });

async function post(pathname: string, body: string | Buffer | undefined, headers: Record<string, string> = bearer()) {
  const before = api.requests.length;
  const res = await request(`${gw.url}${pathname}`, { method: 'POST', headers, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : null, forwarded: api.requests.slice(before) };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-form-'));
  openapiFile = path.join(dir, 'openapi.yaml');
  writeFileSync(
    openapiFile,
    `openapi: 3.0.3
info: { title: Pets, version: "1.0" }
paths:
  /pets:
    post:
      requestBody:
        content:
          application/x-www-form-urlencoded:
            schema: { $ref: '#/components/schemas/Pet' }
components:
  schemas:
    Pet:
      type: object
      properties:
        id: { type: integer, readOnly: true }
        name: { type: string, minLength: 1 }
        weight: { type: number, nullable: true }
      required: [id, name]
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

describe('form bodies: what is refused, and never reaches the upstream', () => {
  it('no token: 401 before the form is read', async () => {
    const res = await post('/transfers', 'to=DE89370400440532013000&amount=5', { 'content-type': FORM });
    expect(res.status).toBe(401);
    expect(res.forwarded).toEqual([]);
  });

  it('a field the schema does not name (mass assignment): 400, the field named, never its value in the log', async () => {
    const res = await post('/transfers', 'to=DE89370400440532013000&amount=5&fee=0-secret-value');
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({
      code: 'GH_ERR_REQUEST_BODY_INVALID',
      detail: 'the request body is not accepted: it does not match the route\'s schema, at the top level: the property "fee" is not allowed',
    });
    expect(res.forwarded).toEqual([]);
    const line = await accessLine(gw.logs, res.headers['x-request-id']);
    expect(line).toMatchObject({ status: 400, decision: 'denied', reason: 'GH_ERR_REQUEST_BODY_INVALID', route: 'transfer' });
    expect(JSON.stringify(gw.logs)).not.toContain('0-secret-value');
  });

  it('a scalar field given twice (HTTP parameter pollution: one parser takes the first, another the last): 400', async () => {
    const res = await post('/transfers', 'to=DE89370400440532013000&amount=5&amount=9999999');
    expect(res.status).toBe(400);
    expect(res.json.detail).toBe("the request body is not accepted: it does not match the route's schema, at /amount: must be integer");
    expect(res.forwarded).toEqual([]);
  });

  it('text that is not the type the schema names, out of bounds, missing: each named by its place', async () => {
    const cases: [string, string][] = [
      ['to=DE89370400440532013000&amount=5x', 'at /amount: must be integer'],
      ['to=DE89370400440532013000&amount=0', 'at /amount: must be >= 1'],
      ['to=DE89370400440532013000&amount=2.5', 'at /amount: must be integer'],
      ['to=not-an-iban&amount=5', 'at /to: must match pattern "^[A-Z]{2}[0-9]{2}[A-Z0-9]{4,30}$"'],
      ['amount=5', 'at the top level: the property "to" is required'],
      ['to=DE89370400440532013000&amount=5&confirm=yes', 'at /confirm: must be boolean'],
      ['to=DE89370400440532013000&amount=5&tags=rent&tags=cars', 'at /tags/1: must be one of: "rent", "food", "travel"'],
    ];
    for (const [body, where] of cases) {
      const res = await post('/transfers', body);
      expect(res.status, body).toBe(400);
      expect(res.json.detail, body).toBe(`the request body is not accepted: it does not match the route's schema, ${where}`);
      expect(res.forwarded).toEqual([]);
    }
  });

  it('a raw ";" (older parsers split fields on it: a hidden second field), a malformed %-escape, bytes that are not UTF-8: 400', async () => {
    const cases: [string | Buffer, string][] = [
      ['to=DE89370400440532013000&amount=5;amount=9999', 'the form has a raw ";" (some parsers split fields on it as on "&"): send it percent-encoded, %3B'],
      ['to=DE89370400440532013000&amount=5&memo=100%', 'field 3 of the form has a malformed percent-encoding (a "%" not followed by two hex digits, or bytes that are not UTF-8)'],
      ['to=DE89370400440532013000&amount=5&memo=%zz', 'field 3 of the form has a malformed percent-encoding (a "%" not followed by two hex digits, or bytes that are not UTF-8)'],
      ['to=DE89370400440532013000&memo=%C3%28&amount=5', 'field 2 of the form has a malformed percent-encoding (a "%" not followed by two hex digits, or bytes that are not UTF-8)'],
      [Buffer.concat([Buffer.from('to=DE89370400440532013000&amount=5&memo='), Buffer.from([0xff, 0xfe])]), 'the form is not valid UTF-8'],
      [Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('to=DE89370400440532013000&amount=5')]), 'the form starts with a byte-order mark'],
    ];
    for (const [body, reason] of cases) {
      const res = await post('/transfers', body);
      expect(res.status, String(body)).toBe(400);
      expect(res.json.detail).toBe(`the request body is not accepted: ${reason}`);
      expect(res.forwarded).toEqual([]);
    }
  });

  it('JSON on a route that takes forms only, another charset, no Content-Type: 415', async () => {
    const body = 'to=DE89370400440532013000&amount=5';
    const json = await post('/transfers', JSON.stringify({ to: 'DE89370400440532013000', amount: 5 }), bearer('application/json'));
    expect(json.status).toBe(415);
    expect(json.json.detail).toBe(
      'the request body must be a form: Content-Type "application/json" is not a form (application/x-www-form-urlencoded expected)',
    );
    const latin1 = await post('/transfers', body, bearer(`${FORM}; charset=iso-8859-1`));
    expect(latin1.status).toBe(415);
    expect(latin1.json.detail).toBe('the request body must be a form: charset "iso-8859-1" is not UTF-8, the one a form is read in here');
    const multipart = await post('/transfers', body, bearer('multipart/form-data; boundary=x'));
    expect(multipart.status).toBe(415);
    const none = await post('/transfers', body, { authorization: `Bearer ${token}` });
    expect(none.status).toBe(415);
    expect(none.json.detail).toContain('the request has no Content-Type (application/x-www-form-urlencoded expected)');
    expect([...json.forwarded, ...latin1.forwarded, ...multipart.forwarded, ...none.forwarded]).toEqual([]);
  });

  it('a form body required and absent, or empty: 400', async () => {
    const absent = await post('/transfers', undefined, { authorization: `Bearer ${token}` });
    expect(absent.status).toBe(400);
    expect(absent.json.detail).toBe('the request body is not accepted: a form body is required on POST /transfers');
    const empty = await post('/transfers', '');
    expect(empty.status).toBe(400);
    expect(empty.forwarded).toEqual([]);
  });

  it('an OpenAPI 3.0 schema: readOnly refused in a form, nullable read', async () => {
    const refused = await post('/pets', 'name=Rex&id=7', { 'content-type': FORM });
    expect(refused.status).toBe(400);
    expect(refused.json.detail).toBe("the request body is not accepted: it does not match the route's schema, at /id: is read-only (readOnly): answers carry it, requests do not");
    expect(refused.forwarded).toEqual([]);
    const passed = await post('/pets', 'name=Rex&weight=12.5', { 'content-type': FORM });
    expect(passed.status).toBe(200);
    expect(passed.forwarded[0]!.body).toBe('name=Rex&weight=12.5');
  });
});

describe('form bodies: what passes', () => {
  it('a form that matches reaches the upstream byte for byte (its encoding untouched), with the token', async () => {
    const body = 'to=DE89370400440532013000&amount=250&memo=Gr%C3%BC%C3%9Fe+%26+thanks%3B+%E2%9C%93&tags=rent&tags=food&confirm=true';
    const res = await post('/transfers', body);
    expect(res.status).toBe(200);
    expect(res.forwarded).toHaveLength(1);
    expect(res.forwarded[0]!.body).toBe(body);
    expect(res.forwarded[0]!.headers['content-type']).toBe(FORM);
    expect(res.forwarded[0]!.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    expect(res.forwarded[0]!.headers.authorization).toBe(`Bearer ${token}`);
  });

  it('raw UTF-8 and a lone value for an array field pass; UTF-8 named as the charset passes', async () => {
    const body = 'to=DE89370400440532013000&amount=1&memo=grüße&tags=travel';
    const res = await post('/transfers', body, bearer(`${FORM}; charset=UTF-8`));
    expect(res.status).toBe(200);
    expect(res.forwarded[0]!.body).toBe(body);
  });

  it('a route taking JSON and forms checks each against the one schema, and refuses a third kind', async () => {
    const json = await post('/profile', JSON.stringify({ name: 'Ada', age: 36 }), { 'content-type': 'application/json' });
    const form = await post('/profile', 'name=Ada&age=36', { 'content-type': FORM });
    expect([json.status, form.status]).toEqual([200, 200]);
    expect(form.forwarded[0]!.body).toBe('name=Ada&age=36');
    // JSON is not coerced: "36" as text is not an integer there.
    const jsonText = await post('/profile', JSON.stringify({ name: 'Ada', age: '36' }), { 'content-type': 'application/json' });
    expect(jsonText.status).toBe(400);
    expect(jsonText.json.detail).toContain('at /age: must be integer');
    const formExtra = await post('/profile', 'name=Ada&isAdmin=true', { 'content-type': FORM });
    expect(formExtra.status).toBe(400);
    expect(formExtra.json.detail).toContain('the property "isAdmin" is not allowed');
    const text = await post('/profile', 'name=Ada', { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.json.detail).toBe(
      'the request body must be JSON or a form: Content-Type "text/plain" is not JSON or a form (application/json, application/…+json or application/x-www-form-urlencoded expected)',
    );
    const latin1Json = await post('/profile', '{"name":"Ada"}', { 'content-type': 'application/json; charset=iso-8859-1' });
    expect(latin1Json.status).toBe(415);
    expect(latin1Json.json.detail).toContain('charset "iso-8859-1" is not UTF-8, the one JSON is exchanged in');
    expect([...jsonText.forwarded, ...formExtra.forwarded, ...text.forwarded, ...latin1Json.forwarded]).toEqual([]);
  });

  it('without a schema: any well-formed form, and with required: false no body too; a malformed one is still refused', async () => {
    expect((await post('/anyform', 'a=1&a=2&b=&c', { 'content-type': FORM })).status).toBe(200);
    expect((await post('/anyform', undefined, {})).status).toBe(200);
    const bad = await post('/anyform', 'a=%', { 'content-type': FORM });
    expect(bad.status).toBe(400);
    expect(bad.forwarded).toEqual([]);
  });
});

describe('form bodies and gateway.methodOverride', () => {
  it('a form whose _method names another method is refused (Rails, Laravel and Symfony would execute it as that), one naming its own passes', async () => {
    const res = await post('/anyform', 'a=1&_method=DELETE', { 'content-type': FORM });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({
      code: 'GH_ERR_REQUEST_METHOD_OVERRIDE',
      detail: 'the request asks to be taken as another method (the form field _method=DELETE on a POST): send that method itself',
    });
    expect(res.forwarded).toEqual([]);
    const twice = await post('/anyform', '_method=POST&_method=PUT', { 'content-type': FORM });
    expect(twice.status).toBe(400);
    expect((await post('/anyform', 'a=1&_method=post', { 'content-type': FORM })).status).toBe(200);
    // JSON bodies have no such field to frameworks.
    expect((await post('/profile', JSON.stringify({ name: 'Ada' }), { 'content-type': 'application/json' })).status).toBe(200);
  });
});
