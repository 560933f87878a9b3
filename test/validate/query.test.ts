import { describe, expect, it } from 'vitest';
import { checkHeaders, checkParams, checkQuery, createQueryCheck, headerObject, queryObject } from '../../src/validate/query.js';

describe('queryObject', () => {
  it('each name to its decoded value, a repeated name to an array, no prototype', () => {
    const q = queryObject('?limit=10&tag=a&tag=b%20c&q=x+y&__proto__=1&constructor=2&empty=');
    expect(Object.getPrototypeOf(q)).toBeNull();
    expect(Object.entries(q)).toEqual([
      ['limit', '10'],
      ['tag', ['a', 'b c']],
      ['q', 'x y'],
      ['__proto__', '1'],
      ['constructor', '2'],
      ['empty', ''],
    ]);
    expect({ ...queryObject('') }).toEqual({});
    expect({ ...queryObject('?') }).toEqual({});
  });
});

describe('checkQuery', () => {
  const check = createQueryCheck({
    type: 'object',
    properties: {
      limit: { type: 'integer', minimum: 1, maximum: 100 },
      sort: { enum: ['asc', 'desc'] },
      tag: { type: 'array', items: { type: 'string', maxLength: 10 }, maxItems: 3 },
      active: { type: 'boolean' },
    },
    required: ['limit'],
    additionalProperties: false,
  });
  const refusal = (query: string) => checkQuery(check, query)?.description ?? null;

  it('refuses bounds, types, unknown and missing parameters, and a scalar given twice (parameter pollution)', () => {
    expect(refusal('?limit=1000')).toBe('the query is not accepted: at /limit: must be <= 100');
    expect(refusal('?limit=ten')).toBe('the query is not accepted: at /limit: must be integer');
    expect(refusal('?limit=5&limit=50')).toBe('the query is not accepted: at /limit: must be integer');
    expect(refusal('?limit=5&sort=random')).toBe('the query is not accepted: at /sort: must be one of: "asc", "desc"');
    expect(refusal('?limit=5&debug=true')).toBe('the query is not accepted: at the top level: the property "debug" is not allowed');
    expect(refusal('?sort=asc')).toBe('the query is not accepted: at the top level: the property "limit" is required');
    expect(refusal('?limit=5&tag=a&tag=b&tag=c&tag=d')).toBe('the query is not accepted: at /tag: must NOT have more than 3 items');
    expect(refusal('?limit=5&__proto__=x')).toBe('the query is not accepted: at the top level: the property "__proto__" is not allowed');
    expect(checkQuery(check, '?limit=0')?.code).toBe('GH_ERR_REQUEST_QUERY_INVALID');
  });

  it('takes text for numbers and booleans, and a lone value for an array', () => {
    expect(refusal('?limit=10')).toBeNull();
    expect(refusal('?limit=10&tag=one&active=true&sort=desc')).toBeNull();
    expect(refusal('?limit=10&tag=one&tag=two')).toBeNull();
  });
});

describe('checkParams', () => {
  const check = createQueryCheck({ type: 'object', properties: { id: { type: 'integer', minimum: 1 }, slug: { type: 'string', pattern: '^[a-z-]+$' } } });

  it('coerces on a copy: the params claim rules and the log see stay as they were', () => {
    const params = { id: '7', slug: 'tea-pot' };
    expect(checkParams(check, params)).toBeNull();
    expect(params).toEqual({ id: '7', slug: 'tea-pot' });
  });

  it('refuses with 400 GH_ERR_REQUEST_PARAMS_INVALID naming the parameter', () => {
    const refusal = checkParams(check, { id: '0', slug: 'x' });
    expect(refusal).toMatchObject({ status: 400, code: 'GH_ERR_REQUEST_PARAMS_INVALID', description: 'the path is not accepted: at /id: must be >= 1' });
    expect(checkParams(check, { id: '3', slug: '../etc' })?.description).toBe('the path is not accepted: at /slug: must match pattern "^[a-z-]+$"');
    expect(checkParams(check, { id: '', slug: 'a' })?.description).toBe('the path is not accepted: at /id: must be integer');
  });
});

describe('headerObject', () => {
  it('lowercase names, a header sent twice to an array in order, cookie lines joined, pseudo-headers left out, no prototype', () => {
    const h = headerObject([':method', 'GET', ':path', '/x', 'Host', 'gw', 'X-Tenant-Id', 'a', 'x-tenant-id', 'b', 'Cookie', 'a=1', 'cookie', 'b=2', '__proto__', 'p']);
    expect(Object.getPrototypeOf(h)).toBeNull();
    expect(Object.entries(h)).toEqual([
      ['host', 'gw'],
      ['x-tenant-id', ['a', 'b']],
      ['cookie', 'a=1; b=2'],
      ['__proto__', 'p'],
    ]);
  });
});

describe('checkHeaders', () => {
  const check = createQueryCheck({
    type: 'object',
    properties: { 'x-tenant-id': { type: 'string', pattern: '^[a-z]+$' }, 'x-api-version': { type: 'integer', minimum: 1, maximum: 3 } },
    required: ['x-tenant-id'],
  });

  it('refuses a missing required header, a value out of shape, text that is not an integer, a header sent twice', () => {
    const cases: [string[], string][] = [
      [['Host', 'gw'], 'at the top level: the property "x-tenant-id" is required'],
      [['X-Tenant-Id', 'ACME'], 'at /x-tenant-id: must match pattern "^[a-z]+$"'],
      [['X-Tenant-Id', 'acme', 'X-Api-Version', 'v2'], 'at /x-api-version: must be integer'],
      [['X-Tenant-Id', 'acme', 'X-Api-Version', '9'], 'at /x-api-version: must be <= 3'],
      [['X-Tenant-Id', 'acme', 'X-Tenant-Id', 'evil'], 'at /x-tenant-id: must be string'],
    ];
    for (const [raw, reason] of cases) {
      expect(checkHeaders(check, raw), reason).toMatchObject({ status: 400, code: 'GH_ERR_REQUEST_HEADERS_INVALID', description: `the request's headers are not accepted: ${reason}` });
    }
  });

  it('takes the headers it names in any case, and every other header as it is', () => {
    expect(checkHeaders(check, ['x-TENANT-id', 'acme', 'X-Api-Version', '2', 'User-Agent', 'curl', 'Accept', 'a', 'Accept', 'b'])).toBeNull();
  });
});
