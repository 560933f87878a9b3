import { describe, expect, it } from 'vitest';
import { createRouteTable } from '../../src/route/match.js';
import { normalizeTarget } from '../../src/route/normalize.js';

describe('route table', () => {
  const table = createRouteTable([
    { path: '/orders', methods: ['GET'], route: 'list' },
    { path: '/orders', methods: ['POST'], route: 'create' },
    { path: '/orders/{id}', methods: null, route: 'one' },
    { path: '/orders/export', methods: ['GET'], route: 'export' },
    { path: '/', methods: ['GET'], route: 'root' },
    { path: '/users/{userId}/orders/{orderId}', methods: ['GET'], route: 'user-order' },
  ]);

  it('matches on segment boundaries only', () => {
    expect(table.match('GET', '/orders')).toMatchObject({ kind: 'route', route: 'list' });
    expect(table.match('GET', '/ordersX')).toMatchObject({ kind: 'route', route: 'root' });
  });
  it('lets the most specific path win, a literal over a param', () => {
    expect(table.match('GET', '/orders/export')).toMatchObject({ route: 'export' });
    expect(table.match('GET', '/orders/42')).toMatchObject({ route: 'one', params: { id: '42' } });
    expect(table.match('GET', '/orders/42/items')).toMatchObject({ route: 'one', prefixLength: 10 });
  });
  it('chooses among routes of one path by method, and HEAD follows GET', () => {
    expect(table.match('POST', '/orders')).toMatchObject({ route: 'create' });
    expect(table.match('HEAD', '/orders')).toMatchObject({ route: 'list' });
  });
  it('answers method-not-allowed from the most specific path, never falling back to a shorter route', () => {
    expect(table.match('DELETE', '/orders')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD, POST' });
    expect(table.match('POST', '/orders/export')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
  });
  it('refuses TRACE on a route without a method list: its answer would echo the forwarded credentials', () => {
    expect(table.match('TRACE', '/orders/42')).toEqual({ kind: 'method-not-allowed', allow: 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT' });
    const t = createRouteTable([{ path: '/api', methods: null, route: 'api' }]);
    expect(t.match('TRACE', '/api/x')).toEqual({ kind: 'method-not-allowed', allow: 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT' });
    // Any other method, listed or not, still reaches such a route.
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND']) {
      expect(t.match(method, '/api/x')).toMatchObject({ kind: 'route', route: 'api' });
    }
  });
  it('takes TRACE on a route that lists it, and names it in Allow beside an unlisted route', () => {
    const t = createRouteTable([
      { path: '/diag', methods: ['TRACE'], route: 'trace' },
      { path: '/diag', methods: null, route: 'rest' },
    ]);
    expect(t.match('TRACE', '/diag')).toMatchObject({ kind: 'route', route: 'trace' });
    expect(t.match('GET', '/diag')).toMatchObject({ kind: 'route', route: 'rest' });
    const only = createRouteTable([{ path: '/diag', methods: ['GET'], route: 'get' }, { path: '/diag', methods: null, route: 'rest' }]);
    expect(only.match('TRACE', '/diag')).toEqual({ kind: 'method-not-allowed', allow: 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT' });
  });
  it('ignores a trailing slash and keeps the prefix length of the matched segments', () => {
    expect(table.match('GET', '/orders/')).toMatchObject({ route: 'list', prefixLength: 7 });
    expect(table.match('GET', '/users/u1/orders/7/')).toMatchObject({ route: 'user-order', params: { userId: 'u1', orderId: '7' } });
  });
  it('keeps the params of the winning branch only, after backtracking from a literal dead end', () => {
    const t = createRouteTable([
      { path: '/a/b/c', methods: null, route: 'abc' },
      { path: '/a/{x}/d', methods: null, route: 'axd' },
    ]);
    expect(t.match('GET', '/a/b/d')).toMatchObject({ route: 'axd', params: { x: 'b' } });
    expect(t.match('GET', '/a/b/c/z')).toMatchObject({ route: 'abc', params: {} });
  });
  it('captures several params and decodes them', () => {
    expect(table.match('GET', '/users/a%40b/orders/7')).toMatchObject({ params: { userId: 'a@b', orderId: '7' } });
  });
  it('finds nothing when no route prefixes the path', () => {
    const t = createRouteTable([{ path: '/api', methods: null, route: 'api' }]);
    expect(t.match('GET', '/other')).toEqual({ kind: 'not-found' });
    expect(t.match('GET', '/apix')).toEqual({ kind: 'not-found' });
  });
});

describe('request-target normalization', () => {
  const ok: [string, string, string][] = [
    ['/a/b', '/a/b', ''],
    ['/a//b', '/a/b', ''],
    ['/a/./b', '/a/b', ''],
    ['/a/b/../c', '/a/c', ''],
    ['/a/b/', '/a/b/', ''],
    ['/a?x=1&y=%2F', '/a', '?x=1&y=%2F'],
    ['/a%20b', '/a%20b', ''],
  ];
  for (const [input, path, query] of ok) {
    it(`normalizes ${input}`, () => expect(normalizeTarget(input)).toEqual({ ok: true, path, query }));
  }
  const refused: [string, string][] = [
    ['/a%2Fb', 'an encoded slash'],
    ['/a%2fb', 'a lowercase encoded slash'],
    ['/a%5Cb', 'an encoded backslash'],
    ['/a/%2e%2e/b', 'an encoded dot segment'],
    ['/a/.%2e/b', 'a half-encoded dot segment'],
    ['/a\\b', 'a backslash'],
    ['/a%00b', 'an encoded NUL'],
    ['/a%0ab', 'an encoded newline'],
    ['/a\u0001b', 'a raw control character'],
    ['/a%g1', 'invalid percent-encoding'],
    ['/a%1', 'truncated percent-encoding'],
    ['/../a', 'climbing above the root'],
    ['http://other.example/a', 'absolute-form for another host'],
    ['*', 'asterisk-form'],
    ['/a#frag', 'a fragment'],
    ['/a?x=\u0000', 'a control character in the query'],
    ['/caf\u00e9', 'raw non-ASCII'],
  ];
  for (const [input, what] of refused) {
    it(`refuses ${what}`, () => expect(normalizeTarget(input).ok).toBe(false));
  }
  it('accepts absolute-form for its own host', () => {
    expect(normalizeTarget('http://gw.example:8080/a/../b', new Set(['gw.example:8080']))).toEqual({ ok: true, path: '/b', query: '' });
  });
});

describe('request-target normalization: one spelling per resource (RFC 3986 §6.2.2)', () => {
  it.each([
    ['decodes an encoded unreserved letter, so an {id} cannot hide a literal route', '/orders/%65xport', '/orders/export'],
    ['decodes an uppercase-hex letter', '/%41dmin', '/Admin'],
    ['decodes ~ - _ and digits', '/a%7eb%2Dc%5fd%31', '/a~b-c_d1'],
    ['uppercases the hex of an encoding that stays', '/caf%c3%a9', '/caf%C3%A9'],
    ['keeps an already uppercase encoding as it is', '/a%20b%3A', '/a%20b%3A'],
    ['keeps an encoded semicolon encoded: data, not a parameter', '/a%3bb', '/a%3Bb'],
    ['decodes and resolves dot segments together', '/x/%61/../%62//c', '/x/b/c'],
  ])('%s', (_what, input, path) => {
    expect(normalizeTarget(`${input}?q=%6a`)).toEqual({ ok: true, path, query: '?q=%6a' });
  });

  it('returns a plain path as it is, without copying it', () => {
    const target = '/orders/42/items';
    const result = normalizeTarget(target);
    expect(result).toEqual({ ok: true, path: target, query: '' });
  });

  it.each([
    ['an encoded dot, even next to a decoded letter', '/a/%2e%61'],
    ['an encoded dot segment in uppercase', '/a/%2E%2E/b'],
    ['an encoded slash in uppercase', '/a%2Fb'],
    ['an encoded slash in lowercase', '/a%2fb'],
  ])('still refuses %s', (_what, input) => {
    expect(normalizeTarget(input).ok).toBe(false);
  });

  it('refuses the asterisk-form of any method, OPTIONS included', () => {
    expect(normalizeTarget('*')).toEqual({ ok: false, reason: 'request target is not in origin-form' });
  });
});

describe('request-target normalization: ";" path parameters', () => {
  it.each([
    ['after a literal segment', '/orders/export;x'],
    ['as a dot-dot segment with parameters', '/pub/..;/admin'],
    ['at the end', '/a;'],
    ['in the first segment', '/a;b=c/d'],
  ])('refuses a raw ";" by default: %s', (_what, input) => {
    expect(normalizeTarget(input)).toEqual({ ok: false, reason: 'semicolon in path' });
  });

  it('lets path parameters through with allowSemicolons, and forwards them', () => {
    expect(normalizeTarget('/cars;color=red/2024;x=1;y=2', undefined, true)).toEqual({ ok: true, path: '/cars;color=red/2024;x=1;y=2', query: '' });
    expect(normalizeTarget('/a/b;v=1/../c;w', undefined, true)).toEqual({ ok: true, path: '/a/c;w', query: '' });
  });

  it.each([
    ['..;', '/pub/..;/admin'],
    ['..;x', '/pub/..;x/admin'],
    ['.;x', '/pub/.;x/admin'],
    ['a trailing ..;x', '/pub/..;x'],
    ['an empty segment with parameters', '/pub/;x/admin'],
    ['an empty first segment with parameters', '/;x'],
  ])('refuses %s even with allowSemicolons', (_what, input) => {
    expect(normalizeTarget(input, undefined, true)).toEqual({ ok: false, reason: 'dot or empty segment with parameters' });
  });

  it('judges only the first ";" of a segment as the end of its name', () => {
    expect(normalizeTarget('/a;..;.', undefined, true)).toEqual({ ok: true, path: '/a;..;.', query: '' });
  });
});

describe('route table: names, parameters and encodings', () => {
  const t = createRouteTable([
    { path: '/users/{userId}/orders', methods: null, route: 'orders' },
    { path: '/users/{id}/profile', methods: null, route: 'profile' },
    { path: '/users/{id}', methods: null, route: 'user' },
    { path: '/orders/{id}', methods: null, route: 'one' },
    { path: '/orders/export', methods: ['GET'], route: 'export' },
    { path: '/v1/orders:export', methods: null, route: 'colon' },
  ]);

  it("names each route's params as that route does, whichever route created the trie node", () => {
    expect(t.match('GET', '/users/u1/profile')).toMatchObject({ route: 'profile', params: { id: 'u1' } });
    expect(t.match('GET', '/users/u1/orders')).toMatchObject({ route: 'orders', params: { userId: 'u1' } });
    expect(t.match('GET', '/users/u1')).toMatchObject({ route: 'user', params: { id: 'u1' } });
    expect((t.match('GET', '/users/u1/profile') as { params: object }).params).not.toHaveProperty('userId');
  });

  it('matches a segment without its path parameters, as Tomcat, Jetty and Spring map it', () => {
    expect(t.match('GET', '/orders/export;x')).toMatchObject({ route: 'export', prefixLength: 16 });
    expect(t.match('POST', '/orders/export;x')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
    expect(t.match('GET', '/users/u1;v=2/profile;a=b')).toMatchObject({ route: 'profile', params: { id: 'u1' } });
  });

  it('matches an encoded segment against a literal as the upstream decodes it', () => {
    expect(t.match('GET', '/v1/orders%3Aexport')).toMatchObject({ route: 'colon' });
    expect(t.match('GET', '/v1/orders%3aexport')).toMatchObject({ route: 'colon' });
    expect(t.match('GET', '/orders/%C3%A9')).toMatchObject({ route: 'one', params: { id: 'é' } });
    // Not UTF-8 once decoded: matches no literal, and the param keeps its raw spelling.
    expect(t.match('GET', '/orders/%FF')).toMatchObject({ route: 'one', params: { id: '%FF' } });
  });
});

describe('exact routes (routes[].exact)', () => {
  const table = createRouteTable([
    { path: '/orders', methods: ['GET', 'POST'], route: 'orders', exact: true },
    { path: '/orders/{id}', methods: ['GET'], route: 'order', exact: true },
    { path: '/files', methods: null, route: 'files' },
    { path: '/files/admin', methods: ['GET'], route: 'files-admin', exact: true },
  ]);

  it('take their own path only (a trailing slash too), never the paths under it', () => {
    expect(table.match('GET', '/orders')).toMatchObject({ kind: 'route', route: 'orders' });
    expect(table.match('GET', '/orders/')).toMatchObject({ kind: 'route', route: 'orders' });
    expect(table.match('GET', '/orders/7')).toMatchObject({ kind: 'route', route: 'order', params: { id: '7' } });
    expect(table.match('GET', '/orders/7/cancel')).toEqual({ kind: 'not-found' });
    expect(table.match('POST', '/orders/7/cancel/now')).toEqual({ kind: 'not-found' });
  });

  it('answer 405 with their own methods, only where the path ends', () => {
    expect(table.match('DELETE', '/orders')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD, POST' });
    expect(table.match('POST', '/orders/7')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
  });

  it('under a prefix route, a path that goes on past the exact one falls to the prefix route', () => {
    expect(table.match('GET', '/files/admin')).toMatchObject({ kind: 'route', route: 'files-admin' });
    expect(table.match('PUT', '/files/admin')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
    expect(table.match('GET', '/files/admin/secrets')).toMatchObject({ kind: 'route', route: 'files' });
    expect(table.match('GET', '/files/other/x')).toMatchObject({ kind: 'route', route: 'files' });
  });

  it('an exact route and a prefix route on one path: the exact one is only for the path itself', () => {
    const both = createRouteTable([
      { path: '/api', methods: ['POST'], route: 'create', exact: true },
      { path: '/api', methods: ['GET'], route: 'browse' },
    ]);
    expect(both.match('POST', '/api')).toMatchObject({ route: 'create' });
    expect(both.match('GET', '/api/x')).toMatchObject({ route: 'browse' });
    expect(both.match('POST', '/api/x')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
  });
});
