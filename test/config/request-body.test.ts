import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { formatConfigIssue } from '../../src/errors.js';
import { fileIssues, issuesOf } from '../helpers/config.js';

/** `routes[].requestBody` at load (docs/configuration.md, "Request bodies"). */
const config = (requestBody: string, methods = '') => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - name: orders
    path: /orders
    upstream: api
    public: true
${methods ? `    methods: ${methods}\n` : ''}    requestBody: ${requestBody}
`;

describe('routes[].requestBody: what is refused at load', () => {
  it('a schema with an unknown keyword (strict: a typo is never a rule silently skipped)', () => {
    const issues = issuesOf(config('{ schema: { type: object, requred: [qty] } }'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 8, path: 'routes[0].requestBody.schema' });
    expect(formatConfigIssue(issues[0]!)).toMatch(/^gatehouse\.yaml:8:\d+ routes\[0\]\.requestBody\.schema is not a usable JSON Schema: strict mode: unknown keyword: "requred"$/);
  });

  it('an unknown format, a broken $ref, an unknown draft', () => {
    expect(issuesOf(config('{ schema: { type: string, format: emial } }'))[0]!.message).toMatch(/unknown format "emial"/);
    expect(issuesOf(config('{ schema: { $ref: "#/$defs/missing" } }'))[0]!.message).toMatch(/can't resolve reference #\/\$defs\/missing/);
    expect(issuesOf(config('{ schema: { $schema: "http://json-schema.org/draft-04/schema#", type: object } }'))[0]!.message).toMatch(
      /\$schema "http:\/\/json-schema.org\/draft-04\/schema#" is not a draft gatehouse reads/,
    );
  });

  it('methods that carry no body, or that the route does not take', () => {
    const issues = issuesOf(config('{ methods: [GET, PUT] }', '[GET, POST]'));
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['routes[0].requestBody.methods[0]', 'GET requests carry no body to check'],
      ['routes[0].requestBody.methods[1]', "PUT is not among the route's methods (GET, POST)"],
    ]);
  });

  it('a route that takes none of POST, PUT, PATCH and lists no methods to check', () => {
    const issues = issuesOf(config('{ required: true }', '[GET, DELETE]'));
    expect(issues.map((i) => i.path)).toEqual(['routes[0].requestBody.methods']);
    expect(issues[0]!.message).toMatch(/takes none of POST, PUT, PATCH/);
  });

  it('unknown keys and out-of-range depths', () => {
    expect(issuesOf(config('{ schema: { type: object }, strict: true }'))[0]).toMatchObject({ path: 'routes[0].requestBody.strict' });
    expect(issuesOf(config('{ maxDepth: 0 }'))[0]).toMatchObject({ path: 'routes[0].requestBody.maxDepth', message: 'must be >= 1' });
    expect(issuesOf(config('{ maxDepth: 5000 }'))[0]).toMatchObject({ path: 'routes[0].requestBody.maxDepth', message: 'must be <= 1000' });
    expect(issuesOf(config('{ schema: 42 }'))[0]).toMatchObject({ path: 'routes[0].requestBody.schema' });
  });

  it('a schema file that is missing, not JSON, or not an object: named with its path', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-schema-'));
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: ./schemas/order.json }'));
    let issues = fileIssues(dir);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 8, path: 'routes[0].requestBody.schema' });
    expect(issues[0]!.message).toBe(`the schema file ${path.join(dir, 'schemas', 'order.json')} does not exist`);

    writeFileSync(path.join(dir, 'order.json'), '{ "type": "object", }');
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: order.json }'));
    issues = fileIssues(dir);
    expect(issues[0]!.message).toMatch(new RegExp(`^the schema file ${path.join(dir, 'order.json')} is not valid JSON: `));

    writeFileSync(path.join(dir, 'order.json'), '[1, 2]');
    expect(fileIssues(dir)[0]!.message).toBe(`the schema file ${path.join(dir, 'order.json')} does not hold a JSON Schema object`);

    writeFileSync(path.join(dir, 'order.json'), '{ "type": "object", "propertes": {} }');
    expect(fileIssues(dir)[0]!.message).toBe(`is not a usable JSON Schema (${path.join(dir, 'order.json')}): strict mode: unknown keyword: "propertes"`);

    writeFileSync(path.join(dir, 'api.yaml'), 'openapi: 3.1.0\ninfo: { title: x, version: "1" }\ncomponents: { schemas: { Order: { type: object } } }\n');
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: "api.yaml#/components/schemas/Ordr" }'));
    issues = fileIssues(dir);
    expect(issues[0]).toMatchObject({ line: 8, path: 'routes[0].requestBody.schema', message: `the schema file ${path.join(dir, 'api.yaml')} has no schema at #/components/schemas/Ordr` });
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: "api.yaml#/components/schemas/Order", readOnly: ignore }'));
    expect(fileIssues(dir)).toEqual([]);
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: "api.yaml#/components/schemas/Order", readOnly: drop }'));
    expect(fileIssues(dir)[0]).toMatchObject({ path: 'routes[0].requestBody.readOnly', message: 'must be one of: "refuse", "ignore"' });
  });
});

describe('routes[].query at load', () => {
  const q = (query: string) => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - name: search
    path: /search
    upstream: api
    public: true
    query: ${query}
`;
  it('refuses a schema with an unknown keyword, a fragment, a missing schema', () => {
    expect(issuesOf(q('{ schema: { type: object, propertes: {} } }'))[0]).toMatchObject({
      line: 8,
      path: 'routes[0].query.schema',
      message: 'is not a usable JSON Schema: strict mode: unknown keyword: "propertes"',
    });
    expect(issuesOf(q('{ schema: "api.yaml#/x" }'))[0]!.message).toMatch(/^the fragment in api\.yaml#\/x: a query schema is a whole file or inline/);
    expect(issuesOf(q('{}'))[0]!.message).toBe('is missing the required key "schema"');
    expect(loadConfigText(q('{ schema: { type: object } }'), 'gatehouse.yaml', {}).routes[0]!.query).toEqual({ schema: { type: 'object' }, schemaFile: undefined });
  });
});

describe('routes[].requestBody: what loads', () => {
  it('defaults: the route\'s POST, PUT and PATCH, a body required, 32 levels, JSON bodies only, any well-formed JSON', () => {
    const loaded = loadConfigText(config('{}', '[GET, POST, DELETE]'), 'gatehouse.yaml', {});
    expect(loaded.routes[0]!.requestBody).toEqual({ schema: null, schemaFile: undefined, document: undefined, readOnly: 'refuse', methods: ['POST'], required: true, maxDepth: 32, mediaTypes: ['json'] });
    expect(loadConfigText(config('{}'), 'gatehouse.yaml', {}).routes[0]!.requestBody!.methods).toEqual(['POST', 'PUT', 'PATCH']);
    expect(loadConfigText(config('{}').replace(/    requestBody.*\n/, ''), 'gatehouse.yaml', {}).routes[0]!.requestBody).toBeNull();
  });

  it('reads a JSON or YAML schema file relative to the config file, in any of the three drafts', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-schema-'));
    writeFileSync(path.join(dir, 'order.json'), JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', required: ['qty'] }));
    writeFileSync(path.join(dir, 'order.yaml'), 'type: object\nproperties:\n  email: { type: string, format: email }\nunevaluatedProperties: false\n');
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: order.json, methods: [POST], required: false, maxDepth: 8 }'));
    const loaded = loadConfigFile(path.join(dir, 'gatehouse.yaml'), {});
    expect(loaded.routes[0]!.requestBody).toEqual({
      schema: { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', required: ['qty'] },
      schemaFile: path.join(dir, 'order.json'),
      document: undefined,
      readOnly: 'refuse',
      methods: ['POST'],
      required: false,
      maxDepth: 8,
      mediaTypes: ['json'],
    });
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schema: ./order.yaml }'));
    expect(loadConfigFile(path.join(dir, 'gatehouse.yaml'), {}).routes[0]!.requestBody!.schema).toMatchObject({ unevaluatedProperties: false });
  });
});

describe('routes[].requestBody.mediaTypes: what is refused at load', () => {
  it('a kind of body gatehouse does not read, an empty list, a kind twice', () => {
    expect(issuesOf(config('{ mediaTypes: [json, xml] }'))[0]).toMatchObject({ path: 'routes[0].requestBody.mediaTypes[1]' });
    expect(issuesOf(config('{ mediaTypes: [] }'))[0]).toMatchObject({ path: 'routes[0].requestBody.mediaTypes' });
    expect(issuesOf(config('{ mediaTypes: [form, form] }'))[0]).toMatchObject({ path: 'routes[0].requestBody.mediaTypes' });
    expect(issuesOf(config('{ mediaTypes: form }'))[0]).toMatchObject({ path: 'routes[0].requestBody.mediaTypes' });
  });

  it('a schema no form can meet: not an object, or a field that must be an object (a form\'s values are text)', () => {
    const notObject = issuesOf(config('{ mediaTypes: [form], schema: { type: array } }'));
    expect(notObject.map((i) => [i.path, i.message])).toEqual([
      ['routes[0].requestBody.schema', 'a form is read as an object of fields, and this schema\'s type is array: no form could meet it'],
    ]);
    const nested = issuesOf(config('{ mediaTypes: [json, form], schema: { type: object, properties: { address: { type: object }, name: { type: string } } } }'));
    expect(nested.map((i) => [i.path, i.message])).toEqual([
      ['routes[0].requestBody.schema.properties.address', 'is an object, and a form\'s fields are text (or lists of text): no form could set it'],
    ]);
    // For JSON alone the same schema is fine.
    expect(issuesOf(config('{ schema: { type: object, properties: { address: { type: object } } } }'))).toEqual([]);
  });

  it('takes forms, JSON and forms, and a form schema of text, numbers, booleans and arrays', () => {
    expect(issuesOf(config('{ mediaTypes: [form] }'))).toEqual([]);
    expect(
      issuesOf(config('{ mediaTypes: [form, json], schema: { type: object, properties: { a: { type: integer }, b: { type: array, items: { type: string } }, c: { type: [boolean, "null"] } } } }')),
    ).toEqual([]);
  });
});

describe('routes[].requestHeaders at load', () => {
  const headers = (requestHeaders: string) => config('{}').replace(/    requestBody.*\n/, `    requestHeaders: ${requestHeaders}\n`);

  it('a header name with a capital letter (matched lowercased, it would never match), in properties or required', () => {
    const issues = issuesOf(headers('{ schema: { type: object, properties: { X-Tenant-Id: { type: string } }, required: [X-Tenant-Id] } }'));
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['routes[0].requestHeaders.schema.properties.X-Tenant-Id', 'names the header "X-Tenant-Id": header names are matched lowercased, write "x-tenant-id"'],
      ['routes[0].requestHeaders.schema.required[0]', 'names the header "X-Tenant-Id": header names are matched lowercased, write "x-tenant-id"'],
    ]);
  });

  it('a schema that does not compile, a missing schema, an unknown key', () => {
    expect(issuesOf(headers('{ schema: { type: object, propertiez: {} } }'))[0]).toMatchObject({ path: 'routes[0].requestHeaders.schema' });
    expect(issuesOf(headers('{}'))[0]).toMatchObject({ path: 'routes[0].requestHeaders' });
    expect(issuesOf(headers('{ schema: { type: object }, strict: true }'))[0]).toMatchObject({ path: 'routes[0].requestHeaders.strict' });
  });

  it('loads a lowercase schema', () => {
    const loaded = loadConfigText(headers('{ schema: { type: object, properties: { x-tenant-id: { type: string } } } }'), 'gatehouse.yaml', {});
    expect(loaded.routes[0]!.requestHeaders).toEqual({ schema: { type: 'object', properties: { 'x-tenant-id': { type: 'string' } } }, schemaFile: undefined });
  });
});
