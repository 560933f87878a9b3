import { describe, expect, it } from 'vitest';
import { responseHead } from '../../src/forward/upstream.js';

const HSTS: [string, string] = ['strict-transport-security', 'max-age=31536000'];

describe('response head', () => {
  it("never lets the upstream's x-request-id through: gatehouse's id is sent once", () => {
    expect(responseHead({ 'x-request-id': 'spoofed', 'content-type': 'text/plain' }, 'req-1', [])).toEqual(['content-type', 'text/plain', 'x-request-id', 'req-1']);
  });

  it('drops hop-by-hop headers and those the upstream names in Connection', () => {
    const head = responseHead({ connection: 'keep-alive, x-hop', 'keep-alive': 'timeout=5', 'x-hop': 'secret', 'transfer-encoding': 'chunked', 'x-kept': '1' }, 'r', []);
    expect(head).toEqual(['x-kept', '1', 'x-request-id', 'r']);
  });

  it("replaces the upstream's value of a header gatehouse sets (HSTS policy wins)", () => {
    const head = responseHead({ 'strict-transport-security': 'max-age=0', 'content-length': '2' }, 'r', [HSTS]);
    expect(head).toEqual(['content-length', '2', 'x-request-id', 'r', ...HSTS]);
  });

  it("merges vary with the upstream's instead of replacing it", () => {
    expect(responseHead({ vary: 'Accept-Encoding' }, 'r', [['vary', 'Origin']])).toEqual(['x-request-id', 'r', 'vary', 'Accept-Encoding, Origin']);
    expect(responseHead({ vary: ['Accept', 'Cookie'] }, 'r', [['vary', 'Origin']])).toEqual(['x-request-id', 'r', 'vary', 'Accept, Cookie, Origin']);
    expect(responseHead({}, 'r', [['vary', 'Origin']])).toEqual(['x-request-id', 'r', 'vary', 'Origin']);
  });

  it('keeps every value of a repeated upstream header (Set-Cookie)', () => {
    expect(responseHead({ 'set-cookie': ['a=1', 'b=2'] }, 'r', [])).toEqual(['set-cookie', ['a=1', 'b=2'], 'x-request-id', 'r']);
  });
});
