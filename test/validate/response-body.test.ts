import { describe, expect, it } from 'vitest';
import { compileBodySchema } from '../../src/validate/body-schema.js';
import { answerHasNoBody, createResponseCheck, responseBodyProblem, responseHeadProblem, responseValidator, type ResponseCheck } from '../../src/validate/response-body.js';

const object = (name: string) => ({ type: 'object', properties: { [name]: { type: 'string' } }, required: [name], additionalProperties: false });

function check(schemas: Record<string, object>, extra: Partial<Parameters<typeof createResponseCheck>[0]> = {}): ResponseCheck {
  return createResponseCheck({
    schemas: Object.fromEntries(Object.entries(schemas).map(([status, schema]) => [status, { schema }])),
    unlisted: 'pass',
    maxSize: 1024,
    maxDepth: 8,
    writeOnly: 'refuse',
    onInvalid: 'refuse',
    ...extra,
  });
}

describe('responseValidator: which schema an answer must match', () => {
  const c = check({ '200': object('exact'), '2XX': object('range'), '404': object('missing'), default: object('fallback') });
  const accepts = (status: number, name: string) => responseValidator(c, status)!({ [name]: 'x' });

  it('the exact code first, then its range, then default', () => {
    expect(accepts(200, 'exact')).toBe(true);
    expect(accepts(200, 'range')).toBe(false);
    expect(accepts(201, 'range')).toBe(true);
    expect(accepts(404, 'missing')).toBe(true);
    expect(accepts(403, 'fallback')).toBe(true);
    expect(accepts(500, 'fallback')).toBe(true);
  });

  it('no schema and no default: null with unlisted: pass, undefined (refuse) with unlisted: refuse', () => {
    expect(responseValidator(check({ '200': object('a') }), 500)).toBeNull();
    expect(responseValidator(check({ '200': object('a') }, { unlisted: 'refuse' }), 500)).toBeUndefined();
    expect(responseValidator(check({ '200': object('a') }, { unlisted: 'refuse' }), 200)).toBeTypeOf('function');
  });

  it('HEAD, 204, 304 and 1xx have no body to check', () => {
    expect(answerHasNoBody('HEAD', 200)).toBe(true);
    expect(answerHasNoBody('GET', 204)).toBe(true);
    expect(answerHasNoBody('GET', 304)).toBe(true);
    expect(answerHasNoBody('GET', 200)).toBe(false);
    expect(answerHasNoBody('DELETE', 202)).toBe(false);
  });
});

describe('responseHeadProblem: answers refused for their head', () => {
  const c = check({ '200': object('a') });
  it('refuses what is not JSON in UTF-8, encoded, or announced over maxSize', () => {
    expect(responseHeadProblem(c, {})).toBe('the answer has no Content-Type (application/json expected)');
    expect(responseHeadProblem(c, { 'content-type': 'text/html; charset=utf-8' })).toMatch(/is not JSON/);
    expect(responseHeadProblem(c, { 'content-type': 'application/json; charset=utf-16' })).toMatch(/charset "utf-16" is not UTF-8/);
    expect(responseHeadProblem(c, { 'content-type': 'application/json', 'content-encoding': 'gzip' })).toMatch(/encoded \(content-encoding "gzip"\)/);
    expect(responseHeadProblem(c, { 'content-type': 'application/json', 'content-encoding': 'br, gzip' })).toMatch(/encoded/);
    expect(responseHeadProblem(c, { 'content-type': 'application/json', 'content-length': '1025' })).toMatch(/1025 bytes are over responseBody.maxSize \(1024\)/);
  });
  it('accepts JSON and +json types, identity, a length within maxSize', () => {
    expect(responseHeadProblem(c, { 'content-type': 'application/json' })).toBeNull();
    expect(responseHeadProblem(c, { 'content-type': 'application/problem+json; charset=UTF-8', 'content-encoding': 'identity', 'content-length': '1024' })).toBeNull();
  });
});

describe('responseBodyProblem: whole answers', () => {
  const c = check({ '200': object('name') }, { maxDepth: 3 });
  const validate = responseValidator(c, 200)!;
  const problem = (text: string) => responseBodyProblem(c, validate, Buffer.from(text));

  it('refuses an empty body, invalid JSON, a key twice, too deep, invalid UTF-8, a schema violation', () => {
    expect(responseBodyProblem(c, validate, Buffer.alloc(0))).toMatch(/has no body/);
    expect(problem('{"name":')).toMatch(/not valid JSON/);
    expect(problem('{"name":"a","name":"b"}')).toMatch(/the key "name" appears twice/);
    expect(problem('{"name":"a","x":[[[1]]]}')).toMatch(/deeper than 3 levels/);
    expect(responseBodyProblem(c, validate, Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]))).toMatch(/not valid UTF-8/);
    expect(problem('{"name":"a","ssn":"1"}')).toBe('the answer does not match the route\'s schema, at the top level: the property "ssn" is not allowed');
    expect(problem('{"name":1}')).toMatch(/at \/name: must be string/);
  });

  it('accepts what matches', () => {
    expect(problem('{"name":"a"}')).toBeNull();
    expect(problem(' { "name" : "a" } ')).toBeNull();
  });
});

describe('writeOnly in answers', () => {
  const user = {
    type: 'object',
    properties: { id: { type: 'integer', readOnly: true }, password: { $ref: '#/$defs/secret' }, pin: { allOf: [{ writeOnly: true }, { type: 'string' }] } },
    required: ['id', 'password', 'pin'],
    $defs: { secret: { type: 'string', writeOnly: true } },
  };

  it('refused when present, not required, whether marked directly, through a $ref or an allOf member', () => {
    const validate = compileBodySchema(user, { readOnly: 'ignore', writeOnly: 'refuse' });
    expect(validate({ id: 1 })).toBe(true);
    expect(validate({ id: 1, password: 'x' })).toBe(false);
    expect(validate.errors![0]!.keyword).toBe('writeOnly');
    expect(validate({ id: 1, pin: '1234' })).toBe(false);
    expect(validate({})).toBe(false);
  });

  it('writeOnly: ignore reads it as an annotation (required again); request bodies keep refusing readOnly', () => {
    const ignoring = compileBodySchema(user, { readOnly: 'ignore', writeOnly: 'ignore' });
    expect(ignoring({ id: 1, password: 'x', pin: '1' })).toBe(true);
    expect(ignoring({ id: 1 })).toBe(false);
    const request = compileBodySchema(user, { readOnly: 'refuse' });
    expect(request({ password: 'x', pin: '1' })).toBe(true);
    expect(request({ id: 1, password: 'x', pin: '1' })).toBe(false);
  });
});
