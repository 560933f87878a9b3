import { describe, expect, it } from 'vitest';
import { parseJsonBody, structureProblem } from '../../src/validate/json-text.js';

const parse = (text: string | Uint8Array, depth = 32) => parseJsonBody(typeof text === 'string' ? Buffer.from(text) : text, depth);

describe('parseJsonBody: what is refused', () => {
  it('refuses a key twice in one object, the last value being the one JSON.parse would keep', () => {
    const result = parse('{"qty":1,"qty":-5}');
    expect(result).toEqual({ ok: false, reason: 'the key "qty" appears twice in one object (at /)' });
  });

  it('compares keys decoded: "a" and "\\u0061" are one key', () => {
    const result = parse('{"role":"user","\\u0072ole":"admin"}');
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain('"role" appears twice');
  });

  it('finds a duplicate deep inside, and names where it is', () => {
    const result = parse('{"items":[{"sku":"a"},{"sku":"b","price":1,"price":0}],"x":1}');
    expect(!result.ok && result.reason).toBe('the key "price" appears twice in one object (at /items/1)');
  });

  it('escapes "/" and "~" in the pointer it names (RFC 6901)', () => {
    const result = parse('{"a/b":{"c~d":{"k":1,"k":2}}}');
    expect(!result.ok && result.reason).toBe('the key "k" appears twice in one object (at /a~1b/c~0d)');
  });

  it('refuses nesting deeper than maxDepth, objects and arrays alike', () => {
    expect(parse('[[[1]]]', 3).ok).toBe(true);
    const deep = parse('[[[[1]]]]', 3);
    expect(!deep.ok && deep.reason).toBe('it nests objects and arrays deeper than 3 levels (at /0/0/0)');
    const objects = parse('{"a":{"b":{"c":{}}}}', 3);
    expect(!objects.ok && objects.reason).toBe('it nests objects and arrays deeper than 3 levels (at /a/b/c)');
  });

  it('refuses a hundred thousand levels without a stack overflow', () => {
    const result = parse('['.repeat(100_000) + ']'.repeat(100_000));
    expect(!result.ok && result.reason).toContain('deeper than 32 levels');
  });

  it('refuses invalid UTF-8 rather than reading it as U+FFFD', () => {
    const bytes = Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    expect(parse(bytes)).toEqual({ ok: false, reason: 'it is not valid UTF-8' });
    // An overlong encoding of "/" and a lone surrogate's bytes.
    expect(parse(Buffer.from([0x22, 0xc0, 0xaf, 0x22])).ok).toBe(false);
    expect(parse(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])).ok).toBe(false);
  });

  it('refuses a byte-order mark (RFC 8259 §8.1: not added; an upstream parser may not skip it)', () => {
    const result = parse(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}')]));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/^it is not valid JSON/);
  });

  it('refuses what is not JSON: trailing text, two values, comments, single quotes, NaN', () => {
    for (const text of ['{"a":1} x', '{"a":1}{"b":2}', '{"a":1 /* c */}', "{'a':1}", '{"a":NaN}', '', '  ']) {
      expect(parse(text).ok, text).toBe(false);
    }
  });
});

describe('parseJsonBody: what passes', () => {
  it('keeps the same key in different objects, and strings that look like structure', () => {
    const text = '{"a":{"id":1},"b":{"id":2},"s":"{\\"a\\":1,\\"a\\":2} [[[[","t":"\\\\","list":[{"id":1},{"id":1}],"e":{}, "f":[]}';
    const result = parse(text, 3);
    expect(result.ok).toBe(true);
    expect(result.ok && result.value).toEqual(JSON.parse(text));
  });

  it('reads bare values and UTF-8 text', () => {
    expect(parse('42')).toEqual({ ok: true, value: 42 });
    expect(parse('"grüße ✓"')).toEqual({ ok: true, value: 'grüße ✓' });
    expect(parse('null')).toEqual({ ok: true, value: null });
    expect(parse(' { "ключ" : [ 1 , 2 ] } ')).toEqual({ ok: true, value: { ключ: [1, 2] } });
  });

  it('structureProblem counts array indices across commas inside nested values', () => {
    expect(structureProblem('[{"a":[1,2]},{"b":"x,y"},{"c":{"d":1,"d":2}}]', 32)).toBe('the key "d" appears twice in one object (at /2/c)');
  });
});
