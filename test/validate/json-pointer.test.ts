import { describe, expect, it } from 'vitest';
import { openApiRoutes } from '../../src/cli/openapi-routes.js';
import { escapePointer, resolvePointer } from '../../src/validate/json-pointer.js';

describe('JSON pointers (RFC 6901)', () => {
  const doc = { components: { schemas: { 'a/b': { type: 'string' }, 'c~d': 1, 'e f': 2 } } };

  it('escape and resolve their tokens, percent-encoded ones too', () => {
    expect(escapePointer('a/b~c')).toBe('a~1b~0c');
    expect(resolvePointer(doc, '/components/schemas/a~1b')).toEqual({ type: 'string' });
    expect(resolvePointer(doc, '/components/schemas/c~0d')).toBe(1);
    expect(resolvePointer(doc, '/components/schemas/e%20f')).toBe(2);
    expect(resolvePointer(doc, '')).toBe(doc);
  });

  it('never follow inherited properties, and take a malformed % as it is', () => {
    expect(resolvePointer(doc, '/components/__proto__')).toBeUndefined();
    expect(resolvePointer(doc, '/components/constructor')).toBeUndefined();
    expect(resolvePointer(doc, '/components/schemas/%zz')).toBeUndefined();
  });

  it('gatehouse openapi does not throw on such references', () => {
    const api = {
      openapi: '3.1.0',
      paths: {
        '/x': {
          post: {
            parameters: [{ $ref: '#/components/parameters/%zz' }, { $ref: '#/components/__proto__' }],
            requestBody: { $ref: '#/components/requestBodies/%zz' },
            responses: {},
          },
        },
      },
    };
    const { routes } = openApiRoutes(api, { reference: 'api.yaml', upstream: 'u' });
    expect(routes).toHaveLength(1);
    expect(routes[0]!.query).toBeUndefined();
    expect(routes[0]!.requestBody).toBeUndefined();
  });
});
