import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileBodySchema, describeSchemaError, readSchemaFile } from '../../src/validate/body-schema.js';

/** Schemas for `routes[].requestBody`: OpenAPI documents, readOnly, what is refused at load. */
const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-openapi-'));
writeFileSync(
  path.join(dir, 'orders.yaml'),
  `openapi: 3.1.0
info: { title: Orders, version: "1.0" }
paths:
  /orders:
    post:
      x-rate-tier: gold
      requestBody:
        content:
          application/json:
            schema: { $ref: '#/components/schemas/Order' }
components:
  schemas:
    Order:
      type: object
      x-entity: order
      example: { sku: ABC-1234, qty: 1 }
      properties:
        id: { type: string, readOnly: true }
        owner: { $ref: '#/components/schemas/Owner' }
        sku: { type: string, pattern: '^[A-Z]{3}-[0-9]{4}$' }
        qty: { type: integer, minimum: 1 }
        note: { type: [string, 'null'] }
      required: [id, owner, sku, qty]
      additionalProperties: false
    Owner: { type: string, readOnly: true, description: who placed it }
    Broken: { type: object, requred: [x] }
`,
);
writeFileSync(
  path.join(dir, 'pets.json'),
  JSON.stringify({
    openapi: '3.0.3',
    info: { title: 'Pets', version: '1' },
    paths: {},
    components: {
      schemas: {
        Pet: {
          type: 'object',
          discriminator: { propertyName: 'kind' },
          properties: { kind: { type: 'string' }, name: { type: 'string', nullable: true, example: 'Rex' }, id: { type: 'integer', readOnly: true } },
          required: ['kind', 'name', 'id'],
        },
      },
    },
  }),
);

function validator(reference: string, readOnly: 'refuse' | 'ignore' = 'refuse') {
  const read = readSchemaFile(reference, dir);
  const validate = compileBodySchema(read.schema, { document: read.document, readOnly });
  return (body: unknown) => (validate(body) ? null : describeSchemaError(validate.errors?.[0]));
}

describe('a schema inside an OpenAPI document (file#/pointer)', () => {
  it('3.1: a component, its $refs, x- extensions and example read as annotations', () => {
    const check = validator('orders.yaml#/components/schemas/Order');
    expect(check({ sku: 'ABC-1234', qty: 2 })).toBeNull();
    expect(check({ sku: 'ABC-1234', qty: 2, note: null })).toBeNull();
    expect(check({ sku: 'abc', qty: 2 })).toBe('at /sku: must match pattern "^[A-Z]{3}-[0-9]{4}$"');
    expect(check({ sku: 'ABC-1234', qty: 2, admin: true })).toBe('at the top level: the property "admin" is not allowed');
  });

  it('the operation\'s own request body schema, by its path in the document', () => {
    const check = validator('orders.yaml#/paths/~1orders/post/requestBody/content/application~1json/schema');
    expect(check({ sku: 'ABC-1234', qty: 2 })).toBeNull();
    expect(check({ qty: 2 })).toBe('at the top level: the property "sku" is required');
  });

  it('refuses readOnly properties in a request (directly and through a $ref), and does not require them', () => {
    const check = validator('orders.yaml#/components/schemas/Order');
    expect(check({ id: 'o-1', sku: 'ABC-1234', qty: 2 })).toBe('at /id: is read-only (readOnly): answers carry it, requests do not');
    expect(check({ owner: 'mallory', sku: 'ABC-1234', qty: 2 })).toBe('at /owner: is read-only (readOnly): answers carry it, requests do not');
  });

  it('readOnly: ignore reads readOnly as an annotation (and required as written)', () => {
    const check = validator('orders.yaml#/components/schemas/Order', 'ignore');
    expect(check({ id: 'o-1', owner: 'me', sku: 'ABC-1234', qty: 2 })).toBeNull();
    expect(check({ sku: 'ABC-1234', qty: 2 })).toBe('at the top level: the property "id" is required');
  });

  it('3.0: nullable, example and discriminator', () => {
    const check = validator('pets.json#/components/schemas/Pet');
    expect(check({ kind: 'dog', name: null })).toBeNull();
    expect(check({ kind: 'dog', name: 7 })).toBe('at /name: must be string');
    expect(check({ kind: 'dog', name: 'Rex', id: 3 })).toBe('at /id: is read-only (readOnly): answers carry it, requests do not');
  });

  it('refuses at load: no fragment into an OpenAPI document, a pointer to nothing, a fragment that is not a pointer, a typo in what the fragment reaches', () => {
    expect(() => readSchemaFile('orders.yaml', dir)).toThrow(/is an OpenAPI document: name the schema in it with a fragment, e\.g\. orders\.yaml#\/components\/schemas\/NewOrder/);
    expect(() => readSchemaFile('orders.yaml#/components/schemas/Nope', dir)).toThrow(`the schema file ${path.join(dir, 'orders.yaml')} has no schema at #/components/schemas/Nope`);
    expect(() => readSchemaFile('orders.yaml#components', dir)).toThrow('the fragment #components of orders.yaml is not a JSON pointer');
    expect(() => validator('orders.yaml#/components/schemas/Broken')).toThrow('strict mode: unknown keyword: "requred"');
    writeFileSync(path.join(dir, 'v4.yaml'), 'openapi: 4.0.0\ncomponents: { schemas: { A: { type: object } } }\n');
    expect(() => readSchemaFile('v4.yaml#/components/schemas/A', dir)).toThrow(/is an OpenAPI 4\.0\.0 document: gatehouse reads 3\.0 and 3\.1/);
  });
});

describe('readOnly in a plain JSON Schema', () => {
  it('is refused by default, and leaves required', () => {
    const schema = { type: 'object', properties: { id: { type: 'string', readOnly: true }, name: { type: 'string' } }, required: ['id', 'name'] };
    const validate = compileBodySchema(schema);
    expect(validate({ name: 'a' })).toBe(true);
    expect(validate({ id: 'x', name: 'a' })).toBe(false);
    expect(describeSchemaError(validate.errors?.[0])).toBe('at /id: is read-only (readOnly): answers carry it, requests do not');
    // The config's schema object itself is left as it was.
    expect(schema.required).toEqual(['id', 'name']);
  });
});

describe('schema files across loads', () => {
  it('an unchanged file gives the same schema (compiled once, also after a reload); a changed one is read anew', () => {
    const file = path.join(dir, 'shared.yaml');
    writeFileSync(file, 'openapi: 3.1.0\ncomponents: { schemas: { A: { type: object, properties: { id: { type: string, readOnly: true } } } } }\n');
    const first = readSchemaFile('shared.yaml#/components/schemas/A', dir);
    const again = readSchemaFile('shared.yaml#/components/schemas/A', dir);
    expect(again.schema).toBe(first.schema);
    const other = readSchemaFile('shared.yaml#/components', dir);
    // References into one document share it (one ajv instance for all of them).
    expect(other.document!.value).toBe(first.document!.value);
    expect(compileBodySchema(again.schema, { document: again.document, readOnly: 'refuse' })).toBe(compileBodySchema(first.schema, { document: first.document, readOnly: 'refuse' }));
    // The same schema read two ways gives two validators.
    expect(compileBodySchema(first.schema, { document: first.document, readOnly: 'ignore' })({ id: 'x' })).toBe(true);
    expect(compileBodySchema(first.schema, { document: first.document, readOnly: 'refuse' })({ id: 'x' })).toBe(false);
    writeFileSync(file, 'openapi: 3.1.0\ncomponents: { schemas: { A: { type: object, maxProperties: 0 } } }\n');
    const changed = readSchemaFile('shared.yaml#/components/schemas/A', dir);
    expect(changed.schema).not.toBe(first.schema);
    expect(compileBodySchema(changed.schema, { document: changed.document, readOnly: 'refuse' })({ name: 'x' })).toBe(false);
  });
});
