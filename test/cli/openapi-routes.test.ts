import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiRoutes } from '../../src/cli/openapi-routes.js';
import { loadConfigFile } from '../../src/config/load.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/** `gatehouse openapi`: routes from an OpenAPI document, loaded into a real gateway. */
const BIN = path.resolve('bin/gatehouse.js');
const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-openapi-cli-'));

const OPENAPI = `openapi: 3.1.0
info: { title: Orders, version: "1.0" }
security: [ { oauth: [orders:read] } ]
paths:
  /health:
    get: { operationId: health, security: [], responses: { "200": { description: ok } } }
  /orders:
    parameters: [ { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 100, example: 10 } } ]
    get:
      operationId: listOrders
      parameters:
        - { $ref: '#/components/parameters/Status' }
        - { name: limit, in: query, schema: { type: integer, maximum: 50 } }
      responses: { "200": { description: ok } }
    post:
      operationId: createOrder
      security: [ { oauth: [orders:write] } ]
      requestBody: { $ref: '#/components/requestBodies/NewOrder' }
      responses: { "201": { description: created } }
  /orders/{order-id}:
    get: { operationId: getOrder, responses: { "200": { description: ok } } }
    patch:
      operationId: updateOrder
      security: [ { oauth: [orders:write] }, { apiKey: [] } ]
      requestBody:
        content:
          application/merge-patch+json:
            schema: { $ref: '#/components/schemas/Order' }
      responses: { "200": { description: ok } }
  /files/{name}.pdf:
    put:
      operationId: uploadFile
      requestBody: { required: true, content: { application/pdf: { schema: { type: string, format: binary } } } }
      responses: { "204": { description: stored } }
components:
  securitySchemes:
    oauth: { type: oauth2, flows: { clientCredentials: { tokenUrl: https://as.example/token, scopes: { orders:read: read, orders:write: write } } } }
    apiKey: { type: apiKey, in: header, name: X-Api-Key }
  parameters:
    Status: { name: status, in: query, required: true, schema: { $ref: '#/components/schemas/Status' } }
  requestBodies:
    NewOrder:
      required: true
      content:
        application/json:
          schema: { $ref: '#/components/schemas/Order' }
  schemas:
    Status: { type: string, enum: [open, shipped], x-internal: true }
    Order:
      type: object
      properties:
        id: { type: string, readOnly: true }
        item: { type: string, minLength: 1 }
        quantity: { type: integer, minimum: 1 }
      required: [id, item]
      additionalProperties: false
`;

describe('openApiRoutes', () => {
  const doc = parseYaml(OPENAPI) as unknown;
  const { routes, notes } = openApiRoutes(doc, { reference: 'openapi.yaml', upstream: 'orders', issuer: 'main' });

  it('one exact route per path and method, named by operationId', () => {
    expect(routes.map((r) => [r.name, r.methods[0], r.path, r.exact])).toEqual([
      ['health', 'GET', '/health', true],
      ['listOrders', 'GET', '/orders', true],
      ['createOrder', 'POST', '/orders', true],
      ['getOrder', 'GET', '/orders/{order_id}', true],
      ['updateOrder', 'PATCH', '/orders/{order_id}', true],
      ['uploadFile', 'PUT', '/files/{name}', true],
    ]);
  });

  it('security: [] public, the document\'s or the operation\'s OAuth scopes otherwise, the first of several alternatives', () => {
    const by = Object.fromEntries(routes.map((r) => [r.name, r]));
    expect(by.health).toMatchObject({ public: true });
    expect(by.health!.issuers).toBeUndefined();
    expect(by.listOrders).toMatchObject({ scopes: ['orders:read'], issuers: ['main'] });
    expect(by.createOrder).toMatchObject({ scopes: ['orders:write'] });
    expect(by.updateOrder).toMatchObject({ scopes: ['orders:write'] });
    expect(notes).toContain('PATCH /orders/{order-id}: 2 security alternatives; the route requires the first (oauth)');
  });

  it('JSON request bodies by their place in the document (through a components/requestBodies $ref), required as the document says', () => {
    const by = Object.fromEntries(routes.map((r) => [r.name, r]));
    expect(by.createOrder!.requestBody).toEqual({ schema: 'openapi.yaml#/components/requestBodies/NewOrder/content/application~1json/schema' });
    expect(by.updateOrder!.requestBody).toEqual({ schema: 'openapi.yaml#/paths/~1orders~1{order-id}/patch/requestBody/content/application~1merge-patch+json/schema', required: false });
    expect(by.uploadFile!.requestBody).toBeUndefined();
    expect(notes).toContain('PUT /files/{name}.pdf: the request body (application/pdf) is neither JSON nor a form: not checked');
    expect(notes).toContain('PUT /files/{name}.pdf: the segment "{name}.pdf" is matched as a whole parameter {name} (a route segment is a literal or a parameter)');
  });

  it('form bodies: a form alone, JSON and a form with one schema, another schema or none for the form, media types it cannot check', () => {
    const text = `openapi: 3.0.3
info: { title: Forms, version: "1" }
security: []
paths:
  /login:
    post:
      operationId: login
      requestBody: { required: true, content: { application/x-www-form-urlencoded: { schema: { $ref: '#/components/schemas/Login' } } } }
      responses: { "204": { description: ok } }
  /pets:
    post:
      operationId: addPet
      requestBody:
        content:
          application/json: { schema: { $ref: '#/components/schemas/Pet' } }
          application/x-www-form-urlencoded: { schema: { $ref: '#/components/schemas/Pet' } }
          application/xml: { schema: { $ref: '#/components/schemas/Pet' } }
      responses: { "200": { description: ok } }
    put:
      operationId: updatePet
      requestBody:
        content:
          application/json: { schema: { $ref: '#/components/schemas/Pet' } }
          application/x-www-form-urlencoded: { schema: { type: object, properties: { name: { type: string } } } }
      responses: { "200": { description: ok } }
  /feedback:
    post:
      operationId: feedback
      requestBody: { content: { Application/X-WWW-Form-Urlencoded: {} } }
      responses: { "204": { description: ok } }
components:
  schemas:
    Login: { type: object, properties: { user: { type: string }, password: { type: string, writeOnly: true } }, required: [user, password], additionalProperties: false }
    Pet: { type: object, properties: { name: { type: string } }, additionalProperties: false }
`;
    const out = openApiRoutes(parseYaml(text) as unknown, { reference: 'forms.yaml', upstream: 'api' });
    const by = Object.fromEntries(out.routes.map((r) => [r.name, r]));
    expect(by.login!.requestBody).toEqual({ schema: 'forms.yaml#/paths/~1login/post/requestBody/content/application~1x-www-form-urlencoded/schema', mediaTypes: ['form'] });
    expect(by.addPet!.requestBody).toEqual({ schema: 'forms.yaml#/paths/~1pets/post/requestBody/content/application~1json/schema', mediaTypes: ['json', 'form'], required: false });
    expect(by.updatePet!.requestBody).toEqual({ schema: 'forms.yaml#/paths/~1pets/put/requestBody/content/application~1json/schema', required: false });
    expect(by.feedback!.requestBody).toEqual({ mediaTypes: ['form'], required: false });
    expect(out.notes).toEqual([
      'PUT /pets: the form body has another schema than the JSON one: the route takes JSON only (a form gets 415)',
      "POST /pets: the request body's application/xml is refused by the route (415): gatehouse checks JSON and form bodies",
      'POST /feedback: the Application/X-WWW-Form-Urlencoded request body has no schema: any well-formed form',
    ]);
    // What it prints loads: the form schemas compile for forms (text read as their types).
    const cfgDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-openapi-forms-'));
    writeFileSync(path.join(cfgDir, 'forms.yaml'), text);
    writeFileSync(path.join(cfgDir, 'gatehouse.yaml'), `listen: { port: 0 }\nupstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]\nroutes: ${JSON.stringify(out.routes)}\n`);
    const loaded = loadConfigFile(path.join(cfgDir, 'gatehouse.yaml'), {});
    expect(Object.fromEntries(loaded.routes.map((r) => [r.name, r.requestBody?.mediaTypes]))).toEqual({ login: ['form'], addPet: ['json', 'form'], updatePet: ['json'], feedback: ['form'] });
  });

  it('header parameters as requestHeaders under lowercase names (Accept, Content-Type, Authorization left out, as OpenAPI says); cookie parameters noted', () => {
    const text = `openapi: 3.1.0
info: { title: Pay, version: "1" }
security: []
components:
  parameters:
    Tenant: { name: X-Tenant-Id, in: header, required: true, schema: { type: string, pattern: "^[a-z]+$", example: acme } }
paths:
  /payments:
    parameters: [ { $ref: '#/components/parameters/Tenant' } ]
    post:
      operationId: pay
      parameters:
        - { name: Idempotency-Key, in: header, required: true, schema: { type: string, format: uuid } }
        - { name: Accept, in: header, schema: { type: string } }
        - { name: Authorization, in: header, schema: { type: string } }
        - { name: session, in: cookie, schema: { type: string } }
      responses: { "201": { description: ok } }
    get:
      operationId: list
      responses: { "200": { description: ok } }
`;
    const out = openApiRoutes(parseYaml(text) as unknown, { reference: 'pay.yaml', upstream: 'api' });
    const by = Object.fromEntries(out.routes.map((r) => [r.name, r]));
    expect(by.pay!.requestHeaders).toEqual({
      schema: {
        type: 'object',
        properties: { 'x-tenant-id': { type: 'string', pattern: '^[a-z]+$' }, 'idempotency-key': { type: 'string', format: 'uuid' } },
        required: ['x-tenant-id', 'idempotency-key'],
      },
    });
    expect(by.list!.requestHeaders).toEqual({ schema: { type: 'object', properties: { 'x-tenant-id': { type: 'string', pattern: '^[a-z]+$' } }, required: ['x-tenant-id'] } });
    expect(out.notes).toEqual(['POST /payments: the cookie parameter session is not checked by gatehouse']);
    // What it prints loads (lowercase names pass the config's check).
    const cfgDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-openapi-headers-'));
    writeFileSync(path.join(cfgDir, 'gatehouse.yaml'), `listen: { port: 0 }\nupstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]\nroutes: ${JSON.stringify(out.routes)}\n`);
    expect(loadConfigFile(path.join(cfgDir, 'gatehouse.yaml'), {}).routes.map((r) => Object.keys((r.requestHeaders?.schema as { properties: object }).properties))).toEqual([
      ['x-tenant-id'],
      ['x-tenant-id', 'idempotency-key'],
    ]);
  });

  it('--prefix puts every route under a path; a server URL with a path is pointed out, not applied', () => {
    const withServer = { ...(doc as object), servers: [{ url: 'https://api.example.com/v1/' }] };
    const plain = openApiRoutes(withServer, { reference: 'openapi.yaml', upstream: 'orders' });
    expect(plain.routes[1]!.path).toBe('/orders');
    expect(plain.notes).toContain(
      'servers[0].url (https://api.example.com/v1/) has the path /v1: the routes take the operations\' paths as written; pass --prefix /v1 if clients call the gateway under it',
    );
    const prefixed = openApiRoutes(withServer, { reference: 'openapi.yaml', upstream: 'orders', prefix: '/v1/' });
    expect(prefixed.routes.map((r) => r.path)).toEqual(['/v1/health', '/v1/orders', '/v1/orders', '/v1/orders/{order_id}', '/v1/orders/{order_id}', '/v1/files/{name}']);
    expect(prefixed.notes.some((n) => n.startsWith('servers[0]'))).toBe(false);
    expect(() => openApiRoutes(doc, { reference: 'x', upstream: 'u', prefix: 'v1' })).toThrow('cannot take the prefix "v1": a path such as /v1');
  });

  it('query parameters (the path item\'s, overridden by the operation\'s) as one inline schema, $refs resolved, OpenAPI words dropped', () => {
    const by = Object.fromEntries(routes.map((r) => [r.name, r]));
    expect(by.listOrders!.query).toEqual({
      schema: { type: 'object', properties: { limit: { type: 'integer', maximum: 50 }, status: { type: 'string', enum: ['open', 'shipped'] } }, required: ['status'] },
    });
    // The path item's parameter alone, its example dropped.
    expect(by.createOrder!.query).toEqual({ schema: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 100 } } } });
    expect(by.health!.query).toBeUndefined();
  });

  it('path parameters as one inline schema under the route\'s names ({order-id} is order_id); a mixed segment left out', () => {
    const withParams = structuredClone(doc) as any;
    withParams.paths['/orders/{order-id}'].parameters = [{ name: 'order-id', in: 'path', required: true, schema: { type: 'string', format: 'uuid', example: 'x' } }];
    withParams.paths['/files/{name}.pdf'].put.parameters = [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }];
    const generated = openApiRoutes(withParams, { reference: 'openapi.yaml', upstream: 'orders' });
    const by = Object.fromEntries(generated.routes.map((r) => [r.name, r]));
    expect(by.getOrder!.params).toEqual({ schema: { type: 'object', properties: { order_id: { type: 'string', format: 'uuid' } } } });
    expect(by.updateOrder!.params).toEqual(by.getOrder!.params);
    expect(by.uploadFile!.params).toBeUndefined();
    expect(by.listOrders!.params).toBeUndefined();
  });

  it('--responses: each operation\'s JSON answers by status (a components/responses $ref followed, 2xx as 2XX), other media types noted', () => {
    const withAnswers = structuredClone(doc) as any;
    withAnswers.paths['/orders/{order-id}'].get.responses = {
      '200': { description: 'ok', content: { 'application/json': { schema: { $ref: '#/components/schemas/Order' } } } },
      '2xx': { description: 'other', content: { 'application/vnd.api+json': { schema: { type: 'object' } } } },
      '404': { $ref: '#/components/responses/NotFound' },
      '410': { description: 'gone' },
      default: { description: 'error', content: { 'text/plain': { schema: { type: 'string' } } } },
    };
    withAnswers.components.responses = { NotFound: { description: 'no such order', content: { 'application/problem+json': { schema: { type: 'object', required: ['title'] } } } } };
    const refused = openApiRoutes(withAnswers, { reference: 'openapi.yaml', upstream: 'orders', responses: 'refuse' });
    const getOrder = refused.routes.find((r) => r.name === 'getOrder')!;
    expect(getOrder.responseBody).toEqual({
      schemas: {
        '200': 'openapi.yaml#/paths/~1orders~1{order-id}/get/responses/200/content/application~1json/schema',
        '2XX': 'openapi.yaml#/paths/~1orders~1{order-id}/get/responses/2xx/content/application~1vnd.api+json/schema',
        '404': 'openapi.yaml#/components/responses/NotFound/content/application~1problem+json/schema',
      },
    });
    expect(refused.notes).toContain('GET /orders/{order-id}: the default answer (text/plain) has no JSON schema: not checked');
    // Operations whose answers have no JSON content get no responseBody.
    expect(refused.routes.find((r) => r.name === 'listOrders')!.responseBody).toBeUndefined();
    const logged = openApiRoutes(withAnswers, { reference: 'openapi.yaml', upstream: 'orders', responses: 'log' });
    expect(logged.routes.find((r) => r.name === 'getOrder')!.responseBody!.onInvalid).toBe('log');
    // Without --responses, nothing about answers.
    expect(openApiRoutes(withAnswers, { reference: 'openapi.yaml', upstream: 'orders' }).routes.some((r) => r.responseBody !== undefined)).toBe(false);
  });

  it('refuses what is not an OpenAPI 3 document', () => {
    expect(() => openApiRoutes({ swagger: '2.0', paths: {} }, { reference: 'x', upstream: 'u' })).toThrow('is not an OpenAPI 3.0 or 3.1 document (its "openapi" is undefined)');
    expect(() => openApiRoutes({ openapi: '3.1.0' }, { reference: 'x', upstream: 'u' })).toThrow('has no "paths" object');
  });
});

/** One authorization server for the end-to-end blocks below. */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
});
afterAll(async () => {
  await as?.stop();
});

/** Run the built CLI on `openapi.yaml` in `cwd`; its stdout, having checked it succeeded. */
function printRoutes(cwd: string, ...flags: string[]): string {
  const out = spawnSync(process.execPath, [BIN, 'openapi', 'openapi.yaml', '--upstream', 'orders', '--issuer', 'main', ...flags], { cwd, encoding: 'utf8', timeout: 20_000 });
  expect(out.stderr).toBe('');
  expect(out.status).toBe(0);
  return out.stdout;
}

/** A config with the printed routes in front of `api`; `documentAt`: how its schema references name the document. */
function gatewayYaml(printed: string, apiUrl: string, documentAt = 'openapi.yaml'): string {
  return `listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [ { name: orders, url: ${apiUrl} } ]
${printed.replace(/openapi\.yaml#/g, `${documentAt}#`)}`;
}

describe('gatehouse openapi (the built CLI), its routes in a real gateway', () => {
  let api: TestUpstream;
  let gw: TestGateway;
  let reader: string;
  let writer: string;

  beforeAll(async () => {
    api = await startUpstream();
    reader = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    writer = await as.clientCredentialsToken('demo-admin', DEMO_CLIENT_SECRETS['demo-admin'], 'orders:read orders:write');
    writeFileSync(path.join(dir, 'openapi.yaml'), OPENAPI);
    const printed = printRoutes(dir);
    expect(printed).toMatch(/^# routes for the operations of openapi\.yaml/);
    // The generated section as it is, under a config in the document's directory (the schema file is relative to it).
    const gatewayFile = path.join(dir, 'gatehouse.yaml');
    writeFileSync(gatewayFile, gatewayYaml(printed, api.url));
    // It loads as written: the schema references resolve next to the config file.
    expect(loadConfigFile(gatewayFile, {}).routes.map((r) => r.name)).toEqual(['health', 'listOrders', 'createOrder', 'getOrder', 'updateOrder', 'uploadFile']);
    gw = await startTestGateway(gatewayYaml(printed, api.url, path.join(dir, 'openapi.yaml')));
  });

  afterAll(async () => {
    await gw?.close();
    await api?.close();
  });

  async function call(method: string, p: string, token?: string, body?: unknown) {
    const before = api.requests.length;
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${gw.url}${p}`, { method: method as 'GET', headers, body: body === undefined ? undefined : JSON.stringify(body) });
    await res.body.dump();
    return { status: res.statusCode, forwarded: api.requests.length - before };
  }

  it('refuses what the document does not list, and what its security or schemas refuse', async () => {
    expect(await call('GET', '/orders')).toEqual({ status: 401, forwarded: 0 });
    expect(await call('GET', '/orders/7/secret', reader)).toEqual({ status: 404, forwarded: 0 });
    expect(await call('GET', '/orders?status=lost', reader)).toEqual({ status: 400, forwarded: 0 });
    expect(await call('GET', '/orders?limit=20', reader)).toEqual({ status: 400, forwarded: 0 });
    expect(await call('DELETE', '/orders/7', writer)).toEqual({ status: 405, forwarded: 0 });
    expect(await call('POST', '/orders', reader, { item: 'tea' })).toEqual({ status: 403, forwarded: 0 });
    expect(await call('POST', '/orders', writer, { item: 'tea', id: 'mine' })).toEqual({ status: 400, forwarded: 0 });
    expect(await call('POST', '/orders', writer, { item: 'tea', owner: 'x' })).toEqual({ status: 400, forwarded: 0 });
    expect(await call('PATCH', '/orders/7', writer, { item: 'tea', id: 'x' })).toEqual({ status: 400, forwarded: 0 });
  });

  it('lets through what it lists', async () => {
    expect(await call('GET', '/health')).toEqual({ status: 200, forwarded: 1 });
    expect(await call('GET', '/orders/7', reader)).toEqual({ status: 200, forwarded: 1 });
    expect(await call('GET', '/orders?status=open&limit=20', reader)).toEqual({ status: 200, forwarded: 1 });
    expect(await call('POST', '/orders', writer, { item: 'tea', quantity: 2 })).toEqual({ status: 200, forwarded: 1 });
    expect(await call('PATCH', '/orders/7', writer, { item: 'coffee' })).toEqual({ status: 200, forwarded: 1 });
  });

  it('exits 3 naming the file for a document it cannot read, 2 without --upstream', () => {
    writeFileSync(path.join(dir, 'swagger.yaml'), 'swagger: "2.0"\npaths: {}\n');
    const bad = spawnSync(process.execPath, [BIN, 'openapi', 'swagger.yaml', '--upstream', 'x'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    expect(bad.status).toBe(3);
    expect(bad.stderr).toBe('gatehouse: swagger.yaml is not an OpenAPI 3.0 or 3.1 document (its "openapi" is undefined)\n');
    const usage = spawnSync(process.execPath, [BIN, 'openapi', 'swagger.yaml'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('usage: gatehouse openapi FILE --upstream NAME');
    const badResponses = spawnSync(process.execPath, [BIN, 'openapi', 'openapi.yaml', '--upstream', 'x', '--responses', 'drop'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    expect(badResponses.status).toBe(2);
    expect(badResponses.stderr).toContain('[--responses refuse|log]');
  });
});

describe('gatehouse openapi --responses (the built CLI), examples/api-contract/openapi.yaml in a real gateway', () => {
  const exampleDir = path.resolve('examples/api-contract');
  let api: TestUpstream;
  let gw: TestGateway;
  let reader: string;
  const order = { id: '3f1c1a52-8f0e-4f3e-9a51-6a1d1c2b3e4f', ownerId: 'demo-client', item: 'tea', quantity: 2, note: null };

  beforeAll(async () => {
    api = await startUpstream();
    api.setHandler((req, res) => {
      const leak = req.url!.endsWith('/0b7e6a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c');
      const text = JSON.stringify(leak ? { ...order, paymentToken: 'tok_live_secret' } : order);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    reader = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    const printed = printRoutes(exampleDir, '--responses', 'refuse');
    expect(printed).toContain('requestBody.schema and responseBody.schemas name openapi.yaml');
    gw = await startTestGateway(gatewayYaml(printed, api.url, path.join(exampleDir, 'openapi.yaml')));
  });

  afterAll(async () => {
    await gw?.close();
    await api?.close();
  });

  async function get(p: string) {
    const before = api.requests.length;
    const res = await request(`${gw.url}${p}`, { headers: { authorization: `Bearer ${reader}` } });
    const text = await res.body.text();
    return { status: res.statusCode, text, forwarded: api.requests.length - before };
  }

  it('lets the answer the document describes through, refuses one with its writeOnly paymentToken, refuses an id that is not a uuid', async () => {
    const ok = await get(`/orders/${order.id}`);
    expect(ok).toMatchObject({ status: 200, forwarded: 1 });
    expect(JSON.parse(ok.text)).toEqual(order);
    const leak = await get('/orders/0b7e6a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c');
    expect(leak).toMatchObject({ status: 502, forwarded: 1 });
    expect(leak.text).not.toContain('tok_live_secret');
    expect(JSON.parse(leak.text).code).toBe('GH_ERR_UPSTREAM_RESPONSE_INVALID');
    expect(await get('/orders/7')).toMatchObject({ status: 400, forwarded: 0 });
  });
});
