import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { inventoryOf } from '../../src/cli/inventory.js';
import { loadConfigText } from '../../src/config/load.js';

/** `gatehouse inventory`: the routes against an OpenAPI document (OWASP API9, improper inventory). */
const DOCUMENT = `openapi: 3.1.0
info: { title: Orders, version: "1" }
security: [ { oauth: [orders:read] } ]
components:
  securitySchemes:
    oauth: { type: oauth2, flows: { clientCredentials: { tokenUrl: https://as.example/token, scopes: { orders:read: r, orders:write: w } } } }
paths:
  /health: { get: { security: [], responses: { "200": { description: ok } } } }
  /orders:
    get: { parameters: [ { name: limit, in: query, schema: { type: integer } } ], responses: { "200": { description: ok } } }
    post:
      security: [ { oauth: [orders:write] } ]
      requestBody: { content: { application/json: { schema: { type: object } } } }
      responses: { "201": { description: ok } }
  /orders/{id}:
    get: { responses: { "200": { description: ok } } }
    delete: { security: [ { oauth: [orders:write] } ], responses: { "204": { description: ok } } }
  /reports: { get: { responses: { "200": { description: ok } } } }
`;

const config = (routes: string) =>
  loadConfigText(
    `listen: { port: 8080 }
issuers: [ { name: main, issuer: "https://as.example", jwksUri: "https://as.example/jwks", audiences: [api] } ]
upstreams: [ { name: orders, url: "http://127.0.0.1:9" }, { name: other, url: "http://127.0.0.1:10" } ]
routes:
${routes}`,
    'gatehouse.yaml',
    {},
  );

const doc = parseYaml(DOCUMENT) as unknown;

describe('inventoryOf: what is exposed', () => {
  it('a route that makes an operation public, misses a scope, or checks less than the document asks', () => {
    const result = inventoryOf(
      doc,
      config(`  - { name: health, path: /health, exact: true, methods: [GET], upstream: orders, public: true }
  - { name: list, path: /orders, exact: true, methods: [GET, POST], upstream: orders, scopes: [orders:read] }
  - { name: one, path: "/orders/{id}", exact: true, methods: [GET, DELETE], upstream: orders, public: true }
  - { name: reports, path: /reports, exact: true, methods: [GET], upstream: orders, scopes: [orders:read] }
`),
      { upstream: 'orders' },
    );
    expect(result).toMatchObject({ operations: 6, routed: 6 });
    expect(result.findings).toEqual([
      { kind: 'exposed', text: 'GET /orders: route list checks no query; the document describes its parameters' },
      { kind: 'exposed', text: 'POST /orders: route list does not require orders:write, which the document does' },
      { kind: 'exposed', text: 'POST /orders: route list checks no request body against a schema; the document gives one' },
      { kind: 'exposed', text: 'GET /orders/{id}: route one is public; the document requires a token with orders:read' },
      { kind: 'exposed', text: 'DELETE /orders/{id}: route one is public; the document requires a token with orders:write' },
    ]);
  });

  it('a route that takes more than the document describes: every path under it, every method, a method no operation has', () => {
    const result = inventoryOf(
      doc,
      config(`  - { name: everything, path: /orders, upstream: orders, scopes: [orders:read, orders:write], query: { schema: { type: object } }, requestBody: { required: false, schema: { type: object } } }
  - { name: purge, path: /reports, exact: true, methods: [GET, DELETE], upstream: orders, scopes: [orders:read] }
  - { name: elsewhere, path: /x, upstream: other, public: true }
`),
      { upstream: 'orders' },
    );
    const texts = result.findings.filter((f) => f.kind === 'exposed').map((f) => f.text);
    expect(texts).toEqual([
      'route everything (/orders) takes every path under it (not exact); the document describes only its operations',
      'route everything (/orders) takes every method; the document describes GET, POST there',
      'route purge (/reports) takes DELETE /reports, which the document does not describe',
    ]);
    // Routes to other upstreams are not this document's; /health is not routed here.
    expect(result.findings.filter((f) => f.kind === 'unrouted').map((f) => f.text)).toEqual(['GET /health: no route takes it (the gateway answers 404)']);
  });
});

describe('inventoryOf: what is not', () => {
  it('exact routes with the document\'s scopes and checks, stricter ones, and HEAD beside GET', () => {
    const result = inventoryOf(
      doc,
      config(`  - { name: health, path: /health, exact: true, methods: [GET, HEAD], upstream: orders, public: true }
  - { name: list, path: /orders, exact: true, methods: [GET], upstream: orders, scopes: [orders:read, orders:admin], query: { schema: { type: object } } }
  - { name: create, path: /orders, exact: true, methods: [POST], upstream: orders, scopes: [orders:write], requestBody: { schema: { type: object } } }
  - { name: one, path: "/orders/{order}", exact: true, methods: [GET], upstream: orders, scopes: [orders:read] }
  - { name: drop, path: "/orders/{order}", exact: true, methods: [DELETE], upstream: orders, scopes: [orders:write] }
  - { name: reports, path: /reports, exact: true, methods: [GET], upstream: orders, scopes: [orders:read] }
`),
    );
    expect(result).toEqual({ operations: 6, routed: 6, findings: [] });
  });
});

describe('gatehouse inventory (the built CLI)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-inventory-'));
  const run = (...args: string[]) => spawnSync(process.execPath, [path.resolve('bin/gatehouse.js'), ...args], { encoding: 'utf8', cwd: dir });
  writeFileSync(path.join(dir, 'openapi.yaml'), DOCUMENT);
  writeFileSync(
    path.join(dir, 'gatehouse.yaml'),
    `listen: { port: 8080 }
issuers: [ { name: main, issuer: "https://as.example", jwksUri: "https://as.example/jwks", audiences: [api] } ]
upstreams: [ { name: orders, url: "http://127.0.0.1:9" } ]
routes: [ { name: all, path: /, upstream: orders, scopes: [orders:read] } ]
`,
  );

  it('prints what is exposed and not routed; exit 0, or 4 with --strict', () => {
    const out = run('inventory', 'openapi.yaml', '--config', 'gatehouse.yaml', '--upstream', 'orders');
    expect(out.status).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^openapi\.yaml against .*gatehouse\.yaml \(routes to orders\): 6 operation\(s\), 6 routed; \d+ exposure\(s\), 0 not routed$/);
    expect(lines).toContain('exposed     route all (/) takes every path under it (not exact); the document describes only its operations');
    expect(lines).toContain('exposed     GET /orders: route all checks no query; the document describes its parameters');
    expect(lines).toContain('exposed     DELETE /orders/{id}: route all does not require orders:write, which the document does');
    expect(run('inventory', 'openapi.yaml', '--config', 'gatehouse.yaml', '--strict').status).toBe(4);
  });

  it('usage errors exit 2, a document it cannot read 3, a broken config 3', () => {
    expect(run('inventory', '--config', 'gatehouse.yaml').status).toBe(2);
    const missing = run('inventory', 'nope.yaml', '--config', 'gatehouse.yaml');
    expect(missing.status).toBe(3);
    expect(missing.stderr).toContain('gatehouse: nope.yaml cannot be read as YAML');
    writeFileSync(path.join(dir, 'not-openapi.yaml'), 'swagger: "2.0"\n');
    expect(run('inventory', 'not-openapi.yaml', '--config', 'gatehouse.yaml').stderr).toContain('is not an OpenAPI 3.0 or 3.1 document');
    writeFileSync(path.join(dir, 'broken.yaml'), 'listen: { port: 8080 }\nroutes: [ { name: r } ]\n');
    expect(run('inventory', 'openapi.yaml', '--config', 'broken.yaml').status).toBe(3);
  });
});
