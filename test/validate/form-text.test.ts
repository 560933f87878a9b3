import { describe, expect, it } from 'vitest';
import { compileBodySchema } from '../../src/validate/body-schema.js';
import { parseFormBody } from '../../src/validate/form-text.js';
import { bodyMediaType, checkBody, createBodyCheck } from '../../src/validate/request-body.js';

const parse = (text: string | Uint8Array) => parseFormBody(typeof text === 'string' ? Buffer.from(text) : text);
const MALFORMED = 'of the form has a malformed percent-encoding';

describe('parseFormBody: what is refused', () => {
  it('a raw ";" anywhere (a field separator to older parsers), before anything else is read', () => {
    expect(parse('a=1;b=2')).toEqual({ ok: false, reason: 'the form has a raw ";" (some parsers split fields on it as on "&"): send it percent-encoded, %3B' });
    expect(parse('a;=1').ok).toBe(false);
  });

  it('a "%" without two hex digits after it, in a name or a value, and names the field', () => {
    for (const [text, field] of [['a=%', 1], ['a=1&b=%4', 2], ['a=1&b=2&%zz=3', 3], ['a=50%25&b=100%', 2]] as const) {
      const result = parse(text);
      expect(result.ok, text).toBe(false);
      expect(!result.ok && result.reason, text).toBe(`field ${field} ${MALFORMED} (a "%" not followed by two hex digits, or bytes that are not UTF-8)`);
    }
  });

  it('percent-escapes that decode to bytes that are not UTF-8 (an overlong "/", a lone continuation byte, a surrogate)', () => {
    for (const text of ['a=%C0%AF', 'a=%80', 'a=%ED%A0%80', 'a=%C3']) {
      const result = parse(text);
      expect(!result.ok && result.reason, text).toContain(MALFORMED);
    }
  });

  it('raw bytes that are not UTF-8, and a byte-order mark', () => {
    expect(parse(Buffer.from([0x61, 0x3d, 0xff]))).toEqual({ ok: false, reason: 'the form is not valid UTF-8' });
    expect(parse(Buffer.from([0x61, 0x3d, 0xc3]))).toEqual({ ok: false, reason: 'the form is not valid UTF-8' });
    expect(parse(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('a=1')]))).toEqual({ ok: false, reason: 'the form starts with a byte-order mark' });
  });
});

describe('parseFormBody: what it reads', () => {
  it('names to decoded values, "+" a space, a name given again to an array in order', () => {
    const result = parse('qty=2&note=a+b%2Bc&tag=x&tag=y&tag=z&semi=%3B');
    expect(result).toEqual({ ok: true, value: { qty: '2', note: 'a b+c', tag: ['x', 'y', 'z'], semi: ';' } });
  });

  it('skips empty sequences; a field without "=" has the value ""; "=" inside a value is kept', () => {
    expect(parse('&&a=1&&b&c=x=y&')).toEqual({ ok: true, value: { a: '1', b: '', c: 'x=y' } });
    expect(parse('')).toEqual({ ok: true, value: {} });
  });

  it('raw UTF-8 and percent-encoded UTF-8 read alike', () => {
    const raw = parse('name=grüße ✓');
    const encoded = parse('name=gr%C3%BC%C3%9Fe+%E2%9C%93');
    expect(raw).toEqual(encoded);
    expect(raw.ok && raw.value.name).toBe('grüße ✓');
  });

  it('a field named __proto__ or constructor is a field like any other (no prototype to reach)', () => {
    const result = parse('__proto__=x&constructor=y&toString=z');
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(Object.getPrototypeOf(result.value)).toBeNull();
    expect(Object.entries(result.value)).toEqual([
      ['__proto__', 'x'],
      ['constructor', 'y'],
      ['toString', 'z'],
    ]);
  });
});

describe('a form checked against a schema (text read as the types the schema names)', () => {
  const schema = {
    type: 'object',
    properties: { qty: { type: 'integer', maximum: 10 }, ok: { type: 'boolean' }, tags: { type: 'array', items: { type: 'string' } }, id: { type: 'string', readOnly: true } },
    required: ['qty', 'id'],
    additionalProperties: false,
  };
  const check = createBodyCheck({ schema, readOnly: 'refuse', methods: ['POST'], required: true, maxDepth: 32, mediaTypes: ['json', 'form'] });
  const form = (text: string) => checkBody(check, Buffer.from(text), 'form');

  it('refuses a scalar twice, a value not of its type, a readOnly field, one not named', () => {
    expect(form('qty=1&qty=2')?.detail).toContain('at /qty: must be integer');
    expect(form('qty=eleven')?.detail).toContain('at /qty: must be integer');
    expect(form('qty=11')?.detail).toContain('at /qty: must be <= 10');
    expect(form('qty=1&ok=maybe')?.detail).toContain('at /ok: must be boolean');
    expect(form('qty=1&id=7')?.detail).toContain('at /id: is read-only');
    expect(form('qty=1&role=admin')?.detail).toContain('the property "role" is not allowed');
  });

  it('takes text for integer and boolean, a lone value for an array, and readOnly not required', () => {
    expect(form('qty=3&ok=true&tags=a')).toBeNull();
    expect(form('qty=3&tags=a&tags=b')).toBeNull();
  });

  it('JSON on the same route is checked without coercion: "3" is not an integer there', () => {
    expect(checkBody(check, Buffer.from('{"qty":"3"}'), 'json')?.detail).toContain('at /qty: must be integer');
    expect(checkBody(check, Buffer.from('{"qty":3}'), 'json')).toBeNull();
  });

  it('compiles each reading once and keeps them apart (the JSON one never coerces)', () => {
    const json = compileBodySchema(schema, { readOnly: 'refuse' });
    const text = compileBodySchema(schema, { readOnly: 'refuse', text: true });
    expect(json).not.toBe(text);
    expect(compileBodySchema(schema, { readOnly: 'refuse', text: true })).toBe(text);
    expect(json({ qty: '3' })).toBe(false);
    expect(text({ qty: '3' })).toBe(true);
  });
});

describe('bodyMediaType: which kind of body a Content-Type announces', () => {
  const base = { schema: null, readOnly: 'refuse' as const, methods: ['POST'], required: true, maxDepth: 32 };
  const jsonOnly = createBodyCheck({ ...base, mediaTypes: ['json'] });
  const formOnly = createBodyCheck({ ...base, mediaTypes: ['form'] });
  const both = createBodyCheck({ ...base, mediaTypes: ['json', 'form'] });

  it('a route taking JSON alone refuses a form, as before', () => {
    expect(bodyMediaType(jsonOnly, 'application/json')).toBe('json');
    expect(bodyMediaType(jsonOnly, 'application/x-www-form-urlencoded')).toEqual({
      problem: 'Content-Type "application/x-www-form-urlencoded" is not JSON (application/json or application/…+json expected)',
    });
  });

  it('a route taking forms: the form type with or without charset=utf-8, nothing else', () => {
    expect(bodyMediaType(formOnly, 'application/x-www-form-urlencoded')).toBe('form');
    expect(bodyMediaType(formOnly, 'Application/X-WWW-Form-Urlencoded; charset="utf-8"')).toBe('form');
    expect(bodyMediaType(formOnly, 'application/x-www-form-urlencoded; charset=windows-1252')).toEqual({
      problem: 'charset "windows-1252" is not UTF-8, the one a form is read in here',
    });
    expect(bodyMediaType(formOnly, 'application/x-www-form-urlencodedx')).toHaveProperty('problem');
    expect(bodyMediaType(formOnly, 'application/json')).toHaveProperty('problem');
    expect(bodyMediaType(formOnly, undefined)).toEqual({ problem: 'the request has no Content-Type (application/x-www-form-urlencoded expected)' });
  });

  it('a route taking both: each to its kind, JSON in another charset refused in JSON\'s words', () => {
    expect(bodyMediaType(both, 'application/merge-patch+json')).toBe('json');
    expect(bodyMediaType(both, 'application/x-www-form-urlencoded')).toBe('form');
    expect(bodyMediaType(both, 'application/json; charset=utf-16')).toEqual({ problem: 'charset "utf-16" is not UTF-8, the one JSON is exchanged in' });
    expect(bodyMediaType(both, 'text/plain')).toHaveProperty('problem');
  });
});
