import { gatehouseCookiePrefixes } from '../../src/authn/token-handler/cookie-names.js';
import { describe, expect, it } from 'vitest';
import { connectionTokens, forwardedElement, publicLocation, upstreamHeaders, upstreamSetCookies } from '../../src/forward/headers.js';

const none = { strip: null, cookiePrefixes: null, ownsCors: false };

describe('upstream headers', () => {
  it('drops hop-by-hop headers (RFC 9110 §7.6.1)', () => {
    const out = upstreamHeaders(
      ['Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'Proxy-Authorization', 'Basic x', 'Proxy-Connection', 'x', 'Trailer', 'x', 'Accept', '*/*'],
      'keep-alive',
      none,
    );
    expect(out).toEqual(['Accept', '*/*']);
  });

  it('drops Expect: gatehouse answers the expectation itself, and undici refuses to send it (RFC 9110 §10.1.1)', () => {
    expect(upstreamHeaders(['Expect', '100-continue', 'Content-Length', '5', 'expect', 'x'], undefined, none)).toEqual(['Content-Length', '5']);
  });

  it('drops every header named in Connection, case-insensitively', () => {
    const out = upstreamHeaders(['X-Hop', '1', 'x-other', '2', 'X-Keep', '3'], 'close, X-HOP,x-other', none);
    expect(out).toEqual(['X-Keep', '3']);
  });

  it('drops headers the gateway sets itself, so a client cannot spoof them', () => {
    const out = upstreamHeaders(
      ['X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil', 'Forwarded', 'for=x', 'X-Request-Id', 'abc', 'Host', 'evil', 'X-Real-IP', '1.1.1.1', 'A', 'b'],
      undefined,
      none,
    );
    expect(out).toEqual(['A', 'b']);
  });

  it('drops the route-specific names (Authorization on protected routes, forwardClaims headers)', () => {
    const out = upstreamHeaders(['Authorization', 'Bearer t', 'X-Auth-Sub', 'admin', 'A', 'b'], undefined, { strip: new Set(['authorization', 'x-auth-sub']), cookiePrefixes: null, ownsCors: false });
    expect(out).toEqual(['A', 'b']);
  });

  it('removes only gatehouse cookies from Cookie', () => {
    expect(upstreamHeaders(['Cookie', '__Host-gh-at=secret; theme=dark; __Host-gh-csrf=x'], undefined, { strip: null, cookiePrefixes: ['__Host-gh-', '__Secure-gh-'], ownsCors: false })).toEqual(['Cookie', 'theme=dark']);
    expect(upstreamHeaders(['Cookie', '__Host-gh-at=secret'], undefined, { strip: null, cookiePrefixes: ['__Host-gh-', '__Secure-gh-'], ownsCors: false })).toEqual([]);
  });

  it('keeps a cookie whose name only starts like the prefix (__Host-ghost is not under __Host-gh)', () => {
    const out = upstreamHeaders(['Cookie', '__Host-ghost=boo; __Host-gh-login=sealed'], undefined, { strip: null, cookiePrefixes: gatehouseCookiePrefixes('__Host-gh'), ownsCors: false });
    expect(out).toEqual(['Cookie', '__Host-ghost=boo']);
  });

  it('removes the host-only login cookie under any configured prefix', () => {
    for (const prefix of ['__Host-gh', '__Secure-app', 'myapp']) {
      const stem = prefix.replace(/^__(Host|Secure)-/, '');
      const header = `${prefix}-at=a; __Host-${stem}-login=l; __Secure-${stem}-rt=r; theme=dark`;
      expect(upstreamHeaders(['Cookie', header], undefined, { strip: null, cookiePrefixes: gatehouseCookiePrefixes(prefix), ownsCors: false }), prefix).toEqual(['Cookie', 'theme=dark']);
    }
  });

  it('skips HTTP/2 pseudo-headers', () => {
    expect(upstreamHeaders([':method', 'GET', ':path', '/', 'a', 'b'], undefined, none)).toEqual(['a', 'b']);
  });

  it('parses Connection tokens', () => {
    expect(connectionTokens(undefined)).toBeNull();
    expect(connectionTokens('close')).toBeNull();
    expect([...connectionTokens(['X-A, x-b', 'keep-alive'])!]).toEqual(['x-a', 'x-b']);
    // The plain values take a fast path; anything longer is still parsed.
    for (const plain of ['keep-alive', 'Keep-Alive', 'close', 'Close']) expect(connectionTokens(plain)).toBeNull();
    expect([...connectionTokens('keep-alive, X-Secret')!]).toEqual(['x-secret']);
  });

  it('writes Forwarded elements, quoting IPv6 and the host', () => {
    expect(forwardedElement('203.0.113.1', 'https', 'api.example.com')).toBe('for=203.0.113.1;proto=https;host="api.example.com"');
    expect(forwardedElement('::1', 'http', undefined)).toBe('for="[::1]";proto=http');
  });

  it('removes quotes and backslashes from the host in a Forwarded element', () => {
    expect(forwardedElement('203.0.113.1', 'http', 'a"b\\c.example')).toBe('for=203.0.113.1;proto=http;host="abc.example"');
  });
});

describe("upstreamSetCookies (an upstream's Set-Cookie without gatehouse's cookies)", () => {
  const prefixes = ['__Host-gh-', '__Secure-gh-'];
  it('drops every cookie named under a prefix, whitespace before the name included', () => {
    expect(upstreamSetCookies('__Host-gh-at=x; Path=/', prefixes)).toBeUndefined();
    expect(upstreamSetCookies([' __Secure-gh-rt=; Max-Age=0', '__Host-gh-id=y'], prefixes)).toBeUndefined();
    expect(upstreamSetCookies(['a=1', '__Host-gh-at=x', 'b=2'], prefixes)).toEqual(['a=1', 'b=2']);
    expect(upstreamSetCookies('__Host-gh-at', prefixes)).toBeUndefined(); // no '=' at all
  });
  it('returns the very value when nothing is dropped (a name that only starts like a prefix stays)', () => {
    const value = ['a=1', '__Host-ghost=1', '__host-gh-at=other-name'];
    expect(upstreamSetCookies(value, prefixes)).toBe(value);
    expect(upstreamSetCookies('theme=dark', prefixes)).toBe('theme=dark');
  });
});

describe("publicLocation (an upstream's Location as the client sees it)", () => {
  const origin = 'http://10.0.0.5:8080';
  it("maps the upstream's own URLs under its base path to the gateway's paths, the stripped prefix put back", () => {
    expect(publicLocation('http://10.0.0.5:8080/base/orders/7?x=1#f', origin, '/base', '')).toBe('/orders/7?x=1#f');
    expect(publicLocation('HTTP://10.0.0.5:8080/base/orders/7', origin, '/base', '/api')).toBe('/api/orders/7');
    expect(publicLocation('http://10.0.0.5:8080/base', origin, '/base', '')).toBe('/');
    expect(publicLocation('http://10.0.0.5:8080/base?next=1', origin, '/base', '')).toBe('/?next=1');
    expect(publicLocation('http://10.0.0.5:8080/orders', origin, '', '')).toBe('/orders');
    expect(publicLocation('http://10.0.0.5:8080', origin, '', '/api')).toBe('/api/');
    expect(publicLocation('/base/login', origin, '/base', '/app')).toBe('/app/login');
    expect(publicLocation('/login', origin, '', '/app')).toBe('/app/login');
  });
  it('leaves other hosts, look-alike hosts and paths, paths outside the base and relative references alone', () => {
    for (const [location, base, prefix] of [
      ['https://idp.example.com/authorize?x=1', '', ''],
      ['http://10.0.0.5:80801/base/x', '/base', ''],
      ['http://10.0.0.5:8080.evil.example/base/x', '/base', ''],
      ['http://10.0.0.5:8080/basement/x', '/base', ''],
      ['http://10.0.0.5:8080/other', '/base', '/api'],
      ['/basement', '/base', ''],
      ['//evil.example/x', '', '/api'],
      ['orders/7', '/base', '/api'],
      ['/orders/7', '', ''],
    ] as const) {
      expect(publicLocation(location, origin, base, prefix), location).toBe(location);
    }
  });
  it("takes the upstream's address with its default port spelled out as the same origin, and no other port", () => {
    expect(publicLocation('http://api.internal:80/base/orders/7', 'http://api.internal', '/base', '/api')).toBe('/api/orders/7');
    expect(publicLocation('HTTPS://API.internal:443?x=1', 'https://api.internal', '', '')).toBe('/?x=1');
    expect(publicLocation('http://[::1]:80/x', 'http://[::1]', '', '/p')).toBe('/p/x');
    for (const [location, upstream] of [
      ['http://api.internal:443/x', 'http://api.internal'],
      ['https://api.internal:80/x', 'https://api.internal'],
      ['http://api.internal:8080/x', 'http://api.internal'],
      ['http://api.internal:800/x', 'http://api.internal'],
      ['http://api.internal:80.evil.example/x', 'http://api.internal'],
      ['http://10.0.0.5:8080:80/x', 'http://10.0.0.5:8080'],
    ] as const) {
      expect(publicLocation(location, upstream, '', '/p'), location).toBe(location);
    }
  });
});
