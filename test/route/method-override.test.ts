import { describe, expect, it } from 'vitest';
import { methodOverrideProblem } from '../../src/route/method-override.js';

describe('methodOverrideProblem: what is refused', () => {
  it('each override header naming another method, in any case, names the header and the method', () => {
    expect(methodOverrideProblem({ 'x-http-method-override': 'DELETE' }, 'POST', '')).toBe('X-HTTP-Method-Override: DELETE on a POST');
    expect(methodOverrideProblem({ 'x-http-method': 'put' }, 'GET', '')).toBe('X-HTTP-Method: put on a GET');
    expect(methodOverrideProblem({ 'x-method-override': ' PATCH ' }, 'POST', '')).toBe('X-Method-Override: PATCH on a POST');
  });

  it('a _method query parameter, also percent-encoded, also after others', () => {
    expect(methodOverrideProblem({}, 'POST', '?_method=DELETE')).toBe('the query parameter _method=DELETE on a POST');
    expect(methodOverrideProblem({}, 'POST', '?a=1&%5Fmethod=DELETE')).toBe('the query parameter _method=DELETE on a POST');
    expect(methodOverrideProblem({}, 'GET', '?_%6Dethod=delete')).toBe('the query parameter _method=delete on a GET');
  });

  it('shows a hostile value as printable ASCII, cut at 32 characters', () => {
    const problem = methodOverrideProblem({ 'x-http-method-override': `DEL\u0000ETE${'X'.repeat(100)}` }, 'POST', '');
    expect(problem).toBe(`X-HTTP-Method-Override: DEL?ETE${'X'.repeat(25)}… on a POST`);
  });
});

describe('methodOverrideProblem: what passes', () => {
  it('no override, or one naming the request\'s own method; other parameters named like it', () => {
    expect(methodOverrideProblem({ host: 'a' }, 'GET', '')).toBeNull();
    expect(methodOverrideProblem({ 'x-http-method-override': 'post' }, 'POST', '')).toBeNull();
    expect(methodOverrideProblem({}, 'POST', '?_method=POST')).toBeNull();
    expect(methodOverrideProblem({}, 'GET', '?method=DELETE&payment_method=card&x=%20')).toBeNull();
  });
});
