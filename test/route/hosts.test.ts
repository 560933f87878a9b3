import { describe, expect, it } from 'vitest';
import { checkRouteHost, createHostRouteTable, hostKey } from '../../src/route/hosts.js';

const table = createHostRouteTable([
  { path: '/', methods: null, hosts: null, route: 'default-root' },
  { path: '/orders', methods: ['GET'], hosts: null, route: 'any-orders' },
  { path: '/orders', methods: ['GET'], hosts: ['*.example.com'], route: 'wild-orders' },
  { path: '/orders', methods: ['GET'], hosts: ['*.eu.example.com'], route: 'eu-orders' },
  { path: '/orders', methods: ['GET', 'POST'], hosts: ['api.example.com'], route: 'api-orders' },
  { path: '/admin', methods: null, hosts: ['admin.example.com', '10.0.0.5', '[::1]'], route: 'admin' },
]);

const routeOf = (host: string | undefined, method: string, path: string) => {
  const m = table.match(host, method, path);
  return m.kind === 'route' ? m.route : m.kind;
};

describe('host-based routing', () => {
  it('a route with hosts is reachable only through them: elsewhere the path is not found (default deny)', () => {
    expect(routeOf('admin.example.com', 'GET', '/admin/users')).toBe('admin');
    expect(routeOf('api.example.com', 'GET', '/admin/users')).toBe('default-root');
    expect(routeOf('evil.test', 'GET', '/admin')).toBe('default-root');
    expect(routeOf(undefined, 'GET', '/admin')).toBe('default-root');
    expect(routeOf('10.0.0.5:8080', 'GET', '/admin')).toBe('admin');
    expect(routeOf('[::1]:8443', 'GET', '/admin')).toBe('admin');
  });

  it('on the same path: exact host, then the longest wildcard, then no hosts', () => {
    expect(routeOf('api.example.com', 'GET', '/orders')).toBe('api-orders');
    expect(routeOf('shop.eu.example.com', 'GET', '/orders')).toBe('eu-orders');
    expect(routeOf('a.b.eu.example.com', 'GET', '/orders')).toBe('eu-orders');
    expect(routeOf('shop.example.com', 'GET', '/orders')).toBe('wild-orders');
    expect(routeOf('example.com', 'GET', '/orders')).toBe('any-orders');
    expect(routeOf('other.test', 'GET', '/orders/7')).toBe('any-orders');
  });

  it('the methods are those of the routes this host reaches (405 with their Allow)', () => {
    expect(table.match('api.example.com', 'POST', '/orders')).toMatchObject({ kind: 'route', route: 'api-orders' });
    expect(table.match('shop.example.com', 'POST', '/orders')).toEqual({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
  });

  it('matches the host whatever its case, port or trailing dot', () => {
    expect(routeOf('API.Example.COM:443', 'POST', '/orders')).toBe('api-orders');
    expect(routeOf('api.example.com.', 'POST', '/orders')).toBe('api-orders');
    expect(hostKey('API.Example.com.:8443')).toBe('api.example.com');
    expect(hostKey('[::1]:8080')).toBe('[::1]');
    expect(hostKey(undefined)).toBe('');
  });

  it('a wildcard never matches its own bare domain, nor a name that merely ends alike', () => {
    expect(routeOf('notexample.com', 'GET', '/orders')).toBe('any-orders');
    expect(routeOf('xeu.example.com', 'GET', '/orders')).toBe('wild-orders');
  });

  it('without hosts on any route, the host is not read at all', () => {
    const plain = createHostRouteTable([{ path: '/', methods: null, hosts: null, route: 'r' }]);
    expect(plain.match('anything at all', 'GET', '/x')).toMatchObject({ kind: 'route', route: 'r' });
  });
});

describe('checkRouteHost', () => {
  it.each(['api.example.com', '*.example.com', 'localhost', '10.0.0.5', '[2001:db8::1]', 'xn--caf-dma.example'])('accepts %s', (host) => {
    expect(checkRouteHost(host)).toBeUndefined();
  });

  it.each<[string, RegExp]>([
    ['API.example.com', /must be lowercase/],
    ['api.example.com:443', /has a port/],
    ['2001:db8::1', /write it in brackets/],
    ['[not-ipv6]', /not a bracketed IPv6 address/],
    ['api.*.example.com', /wildcard that is not a leading/],
    ['*.com', /every name under a top-level domain/],
    ['*', /not a host name|wildcard/],
    ['api_example.com', /not a host name/],
    ['-api.example.com', /not a host name/],
    ['http://api.example.com', /has a port|not a host name/],
  ])('refuses %s', (host, message) => {
    expect(checkRouteHost(host)).toMatch(message);
  });
});
