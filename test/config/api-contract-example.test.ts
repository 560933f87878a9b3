import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { inventoryOf } from '../../src/cli/inventory.js';
import { openApiRoutes } from '../../src/cli/openapi-routes.js';
import { loadConfigFile } from '../../src/config/load.js';
import { checkHeaders, createQueryCheck } from '../../src/validate/query.js';
import { createBodyCheck, checkBody } from '../../src/validate/request-body.js';
import { createResponseCheck, responseBodyProblem, responseValidator } from '../../src/validate/response-body.js';

/** examples/api-contract: the routes `gatehouse openapi` prints for its document, and the rest. */
describe('examples/api-contract', () => {
  it('holds exactly the routes gatehouse openapi prints for its openapi.yaml', () => {
    const doc = parse(readFileSync('examples/api-contract/openapi.yaml', 'utf8')) as unknown;
    const generated = openApiRoutes(doc, { reference: 'openapi.yaml', upstream: 'orders', issuer: 'main', responses: 'refuse' });
    const written = parse(readFileSync('examples/api-contract/gatehouse.yaml', 'utf8')) as { routes: unknown[] };
    expect(written.routes).toEqual(generated.routes);
    expect(generated.notes).toEqual([]);
  });

  it('exposes nothing beyond its document, and routes all of it (gatehouse inventory)', () => {
    const doc = parse(readFileSync('examples/api-contract/openapi.yaml', 'utf8')) as unknown;
    const result = inventoryOf(doc, loadConfigFile('examples/api-contract/gatehouse.yaml', {}), { upstream: 'orders' });
    expect(result).toEqual({ operations: 5, routed: 5, findings: [] });
  });

  it('loads, and its routes check what the document says', () => {
    const config = loadConfigFile('examples/api-contract/gatehouse.yaml', {});
    expect(config.routes.every((r) => r.exact)).toBe(true);
    expect(config.upstreams[0]!.healthCheck).toMatchObject({ path: '/healthz', interval: 5_000, timeout: 1_000 });
    expect(config.tracing).toEqual({ trustIncoming: true, sampled: true });
    expect(config.authFailureLimit).toMatchObject({ limit: 20, window: 60_000, blockFor: 900_000, store: 'memory' });
    const create = createBodyCheck(config.routes.find((r) => r.name === 'createOrder')!.requestBody!);
    expect(checkBody(create, Buffer.from('{"item":"tea","quantity":2}'))).toBeNull();
    expect(checkBody(create, Buffer.from('{"item":"tea","quantity":2,"ownerId":"someone-else"}'))?.description).toBe(
      "the request body is not accepted: it does not match the route's schema, at /ownerId: is read-only (readOnly): answers carry it, requests do not",
    );
    const patch = createBodyCheck(config.routes.find((r) => r.name === 'updateOrder')!.requestBody!);
    expect(checkBody(patch, Buffer.alloc(0))).toBeNull();
    expect(checkBody(patch, Buffer.from('{"item":"coffee"}'))?.description).toContain('the property "item" is not allowed');
    // Answers: an order as the document describes it passes; the writeOnly paymentToken, or a field it does not list, does not.
    const answers = createResponseCheck(config.routes.find((r) => r.name === 'getOrder')!.responseBody!);
    const order = { id: 'o1', ownerId: 'u1', item: 'tea', quantity: 2, note: null };
    expect(responseBodyProblem(answers, responseValidator(answers, 200)!, Buffer.from(JSON.stringify(order)))).toBeNull();
    expect(responseBodyProblem(answers, responseValidator(answers, 200)!, Buffer.from(JSON.stringify({ ...order, paymentToken: 'tok_123' })))).toContain('at /paymentToken: is write-only');
    expect(responseBodyProblem(answers, responseValidator(answers, 200)!, Buffer.from(JSON.stringify({ ...order, internalCost: 3 })))).toContain('the property "internalCost" is not allowed');
    expect(responseBodyProblem(answers, responseValidator(answers, 404)!, Buffer.from('{"title":"not found","status":404}'))).toBeNull();
    expect(responseValidator(answers, 500)).toBeNull();
    // Creating an order takes an Idempotency-Key (a uuid), once.
    const headers = createQueryCheck(config.routes.find((r) => r.name === 'createOrder')!.requestHeaders!.schema);
    expect(checkHeaders(headers, ['Host', 'api.example.com'])?.description).toContain('the property "idempotency-key" is required');
    expect(checkHeaders(headers, ['Idempotency-Key', 'retry-1'])?.description).toContain('at /idempotency-key: must match format "uuid"');
    expect(checkHeaders(headers, ['Idempotency-Key', '0b7e6a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c'])).toBeNull();
    // The request body's schema is the same Order: paymentToken may be sent, readOnly ownerId may not.
    expect(checkBody(create, Buffer.from('{"item":"tea","quantity":2,"paymentToken":"tok_123"}'))).toBeNull();
  });
});
