import { describe, expect, it } from 'vitest';
import { bearerCredential, bearerSyntaxError } from '../../src/authn/bearer.js';
import type { RequestContext } from '../../src/pipeline/context.js';

function ctx(headers: Record<string, string> = {}, query = '', rawHeaders?: string[], token: string | null = null): RequestContext {
  return {
    headers,
    rawHeaders: rawHeaders ?? Object.entries(headers).flat(),
    query,
    token,
    tokenSource: token ? 'cookie' : null,
  } as unknown as RequestContext;
}

/**
 * What the pipeline makes of an Authorization value: the credential stage, then (on a
 * verified-token cache miss) the authenticate stage's b64token check. The token; null for a 400
 * malformed header from either step; undefined for no bearer token.
 */
function taken(header: string): string | null | undefined {
  const c = ctx({ authorization: header });
  if (bearerCredential(c) !== null) return null;
  if (c.token === null) return undefined;
  return bearerSyntaxError(c.token, c.tokenSource) === null ? c.token : null;
}

describe('an Authorization value, through the credential stage and the b64token check', () => {
  it.each([
    ['takes the token of "Bearer <token>"', 'Bearer abc.def.ghi', 'abc.def.ghi'],
    ['accepts the scheme in any case', 'bEaReR abc', 'abc'],
    ['accepts b64token characters and trailing =', 'Bearer a-b.c_d~e+f/g==', 'a-b.c_d~e+f/g=='],
    ['says malformed for Bearer without a token', 'Bearer', null],
    ['says malformed for Bearer and a space only', 'Bearer ', null],
    ['says malformed for two spaces', 'Bearer  abc', null],
    ['says malformed for a token with a space', 'Bearer abc def', null],
    ['says malformed for a token with a quote', 'Bearer ab"c', null],
    ['says malformed for = inside the token', 'Bearer ab=c', null],
    ['says malformed for a tab separator', 'Bearer\tabc', null],
    ['says another scheme for Basic', 'Basic dXNlcjpwYXNz', undefined],
    ['says another scheme for BearerX', 'BearerX abc', undefined],
    ['says another scheme for an empty value', '', undefined],
    ['says malformed for = only', 'Bearer ==', null],
    ['says malformed for a character after the padding', 'Bearer abc=d', null],
    ['says malformed for a trailing newline', 'Bearer abc\n', null],
    ['says malformed for a non-ASCII character', 'Bearer abcé', null],
    ['says malformed for a comma', 'Bearer abc,def', null],
    ['takes a long JWT', `Bearer ${'eyJh'.repeat(200)}.${'x'.repeat(600)}.${'S_-'.repeat(100)}`, `${'eyJh'.repeat(200)}.${'x'.repeat(600)}.${'S_-'.repeat(100)}`],
  ])('%s', (_name, header, expected) => {
    expect(taken(header)).toBe(expected);
  });
});

describe('bearerSyntaxError', () => {
  it.each([['a b'], ['ab"c'], ['ab=c'], ['abc\n'], ['abcé'], ['=='], ['abc,def']])('refuses the header token %j', (token) => {
    expect(bearerSyntaxError(token, 'header')?.code).toBe('GH_ERR_AUTH_MALFORMED_HEADER');
  });

  it('accepts a b64token, and never judges the token handler\'s own cookie session', () => {
    expect(bearerSyntaxError('a-b.c_d~e+f/g==', 'header')).toBeNull();
    expect(bearerSyntaxError('a b', 'cookie')).toBeNull();
  });
});

describe('bearerCredential stage', () => {
  it('sets ctx.token from the Authorization header', () => {
    const c = ctx({ authorization: 'Bearer t0k' });
    expect(bearerCredential(c)).toBeNull();
    expect(c.token).toBe('t0k');
    expect(c.tokenSource).toBe('header');
  });

  it('leaves ctx.token null when no Authorization header is sent (the authenticate stage answers 401)', () => {
    const c = ctx();
    expect(bearerCredential(c)).toBeNull();
    expect(c.token).toBeNull();
  });

  it('does nothing when the token-handler cookie stage already set the token', () => {
    const c = ctx({ authorization: 'Bearer other' }, '?access_token=x', undefined, 'from-cookie');
    expect(bearerCredential(c)).toBeNull();
    expect(c.token).toBe('from-cookie');
  });

  it('refuses access_token in the query string with 400 invalid_request', () => {
    const denial = bearerCredential(ctx({}, '?a=1&access_token=abc'));
    expect(denial?.code).toBe('GH_ERR_AUTH_TOKEN_IN_QUERY');
    expect(denial?.status).toBe(400);
    expect(denial?.oauthError).toBe('invalid_request');
  });

  it('ignores a query parameter that only contains the words access_token', () => {
    expect(bearerCredential(ctx({}, '?q=my_access_token_docs'))).toBeNull();
  });

  it('refuses two Authorization headers', () => {
    const c = ctx({ authorization: 'Bearer a' }, '', ['Authorization', 'Bearer a', 'authorization', 'Bearer b']);
    expect(bearerCredential(c)?.code).toBe('GH_ERR_AUTH_MULTIPLE_CREDENTIALS');
  });

  it('refuses a Bearer header without a token, or with a tab, with 400', () => {
    for (const value of ['Bearer', 'Bearer\tabc']) {
      const denial = bearerCredential(ctx({ authorization: value }));
      expect(denial?.code).toBe('GH_ERR_AUTH_MALFORMED_HEADER');
      expect(denial?.status).toBe(400);
    }
  });

  it('leaves the b64token check of the value to the authenticate stage (bearerSyntaxError), after a cache miss', () => {
    const c = ctx({ authorization: 'Bearer a b' });
    expect(bearerCredential(c)).toBeNull();
    expect(c.token).toBe('a b');
    const denial = bearerSyntaxError(c.token!, c.tokenSource);
    expect(denial?.code).toBe('GH_ERR_AUTH_MALFORMED_HEADER');
    expect(denial?.status).toBe(400);
    expect(denial?.oauthError).toBe('invalid_request');
  });

  it('treats another scheme as no bearer token', () => {
    const c = ctx({ authorization: 'Basic dXNlcg==' });
    expect(bearerCredential(c)).toBeNull();
    expect(c.token).toBeNull();
  });
});

describe('an access_token in the query, in any spelling', () => {
  it.each([
    ['plain', '?access_token=abc'],
    ['after another parameter', '?a=1&access_token=abc'],
    ['with an encoded underscore', '?access%5Ftoken=abc'],
    ['with a lowercase encoded underscore', '?access%5ftoken=abc'],
    ['with every letter encoded', '?%61%63%63%65%73%73%5F%74%6F%6B%65%6E=abc'],
    ['after a ";" separator', '?a=1;access%5Ftoken=abc'],
    ['without a value', '?x=%20&access_token'],
  ])('refuses it %s', (_what, query) => {
    expect(bearerCredential(ctx({}, query))?.code).toBe('GH_ERR_AUTH_TOKEN_IN_QUERY');
  });

  it.each([
    ['a value that says access_token', '?q=access_token'],
    ['an encoded value that says access_token', '?q=access%5Ftoken'],
    ['a longer name', '?access_tokens=1&my_access_token=2'],
    ['a double-encoded name (the upstream decodes once)', '?access%255Ftoken=abc'],
    ['other encoded parameters', '?name=caf%C3%A9&x=%41%42%43%44%45%46%47'],
  ])('lets through %s', (_what, query) => {
    expect(bearerCredential(ctx({}, query))).toBeNull();
  });
});
