import { describe, expect, it } from 'vitest';
import { compileKey, ipv6Network, keyNeedsPrincipal, keyValue, parseKeySpec } from '../../src/limit/key.js';
import type { Principal, RequestContext } from '../../src/pipeline/context.js';

function ctx(over: { clientIp?: string; headers?: Record<string, string | string[]>; claims?: Record<string, unknown> | null; issuer?: string } = {}): RequestContext {
  const principal: Principal | null =
    over.claims === null
      ? null
      : { issuer: over.issuer ?? 'main', subject: 'alice', claims: over.claims ?? { sub: 'alice', client_id: 'app-1' }, scopes: new Set(), kind: 'jwt', upstreamToken: 'x', upstreamAuthorization: 'Bearer x' };
  return { clientIp: over.clientIp ?? '203.0.113.7', headers: over.headers ?? {}, principal } as unknown as RequestContext;
}

const key = (spec: string, c: RequestContext, route = 'checkout') => compileKey(parseKeySpec(spec).parts!, route)(c);

describe('parseKeySpec', () => {
  it.each([
    ['claim:client_id', [{ kind: 'claim', name: 'client_id' }]],
    ['ip', [{ kind: 'ip' }]],
    ['route', [{ kind: 'route' }]],
    ['header:X-Api-Key', [{ kind: 'header', name: 'x-api-key' }]],
    ['claim:sub+route', [{ kind: 'claim', name: 'sub' }, { kind: 'route' }]],
    ['claim:https://example.com/tenant', [{ kind: 'claim', name: 'https://example.com/tenant' }]],
  ])('accepts %s', (spec, parts) => {
    expect(parseKeySpec(spec)).toEqual({ parts });
  });

  it.each([
    ['cookie:session', 'must be claim:NAME'],
    ['claim:', 'needs a claim name'],
    ['header:bad header', 'needs a header field name'],
    ['header:authorization', 'credential'],
    ['header:Cookie', 'credential'],
    ['ip+ip', 'appears twice'],
    ['claim:sub+', 'must be claim:NAME'],
  ])('rejects %s', (spec, message) => {
    expect(parseKeySpec(spec).error).toContain(message);
  });

  it('knows which keys need a validated token', () => {
    expect(keyNeedsPrincipal(parseKeySpec('ip+claim:sub').parts!)).toBe(true);
    expect(keyNeedsPrincipal(parseKeySpec('ip+header:x-api-key+route').parts!)).toBe(false);
  });
});

describe('compileKey', () => {
  it('reads a validated claim, qualified by the issuer that vouched for it', () => {
    expect(key('claim:client_id', ctx())).toBe('main:app-1');
    expect(key('claim:n', ctx({ claims: { n: 42 } }))).toBe('main:42');
  });

  it('gives the same sub from two issuers two keys, and from one issuer one key', () => {
    const fromMain = key('claim:sub', ctx({ claims: { sub: 'alice' }, issuer: 'main' }));
    const fromPartner = key('claim:sub', ctx({ claims: { sub: 'alice' }, issuer: 'partner' }));
    expect(fromMain).not.toBe(fromPartner);
    expect(key('claim:sub', ctx({ claims: { sub: 'alice', other: 1 }, issuer: 'main' }))).toBe(fromMain);
    expect(key('claim:sub+route', ctx({ claims: { sub: 'alice' }, issuer: 'main' }))).not.toBe(key('claim:sub+route', ctx({ claims: { sub: 'alice' }, issuer: 'partner' })));
  });

  it('puts every caller of one issuer without the claim in one shared bucket, and requests without a principal in another', () => {
    expect(key('claim:client_id', ctx({ claims: { sub: 'x' } }))).toBe('main:');
    expect(key('claim:client_id', ctx({ claims: null }))).toBe('');
  });

  it('keys on the client address decided by the trusted-proxy rules', () => {
    expect(key('ip', ctx({ clientIp: '198.51.100.1' }))).toBe('198.51.100.1');
  });

  it('keys an IPv6 client on its /64', () => {
    expect(key('ip', ctx({ clientIp: '2001:db8:1:2:3:4:5:6' }))).toBe('2001:db8:1:2::/64');
    expect(key('ip', ctx({ clientIp: '2001:db8:1:2:ffff::9' }))).toBe('2001:db8:1:2::/64');
  });

  it('reads a header, lower-cased name', () => {
    expect(key('header:X-Api-Key', ctx({ headers: { 'x-api-key': 'k1' } }))).toBe('k1');
    expect(key('header:x-api-key', ctx())).toBe('');
  });

  it('joins parts with | and escapes | in values, so values cannot collide across parts', () => {
    expect(key('claim:sub+route', ctx())).toBe('main:alice|checkout');
    const a = key('header:x-a+header:x-b', ctx({ headers: { 'x-a': 'p|', 'x-b': 'q' } }));
    const b = key('header:x-a+header:x-b', ctx({ headers: { 'x-a': 'p', 'x-b': '|q' } }));
    expect(a).not.toBe(b);
    expect(key('claim:sub+ip+route', ctx())).toBe('main:alice|203.0.113.7|checkout');
  });

  it('hashes long values so that a huge header cannot make a huge key', () => {
    const long = 'x'.repeat(10_000);
    const value = key('header:x-api-key', ctx({ headers: { 'x-api-key': long } }));
    expect(value).toMatch(/^#[A-Za-z0-9_-]{43}$/);
    expect(value).toBe(key('header:x-api-key', ctx({ headers: { 'x-api-key': long } })));
  });
});

describe('keyValue and ipv6Network', () => {
  it('stringifies claim values of any JSON type', () => {
    expect(keyValue(['only'])).toBe('only');
    expect(keyValue(['a', 'b'])).toBe('["a","b"]');
    expect(keyValue(true)).toBe('true');
    expect(keyValue(null)).toBe('');
  });

  it.each([
    ['::1', '0:0:0:0::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['2001:DB8:0:0:1::1', '2001:db8:0:0::/64'],
    ['64:ff9b::192.0.2.33', '64:ff9b:0:0::/64'],
  ])('%s → %s', (ip, network) => {
    expect(ipv6Network(ip)).toBe(network);
  });
});
