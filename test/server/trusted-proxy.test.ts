import { describe, expect, it } from 'vitest';
import { checkTrustedProxy, createTrustedProxies } from '../../src/server/trusted-proxy.js';

describe('createTrustedProxies', () => {
  const proxies = createTrustedProxies(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32']);

  it('trusts listed addresses and subnets only, with the same answer on repeated and alternating checks', () => {
    for (let round = 0; round < 3; round++) {
      expect(proxies.isTrusted('10.1.2.3')).toBe(true);
      expect(proxies.isTrusted('10.1.2.3')).toBe(true);
      expect(proxies.isTrusted('203.0.113.9')).toBe(false);
      expect(proxies.isTrusted('203.0.113.9')).toBe(false);
      expect(proxies.isTrusted('::ffff:127.0.0.1')).toBe(true);
      expect(proxies.isTrusted('127.0.0.2')).toBe(false);
      expect(proxies.isTrusted('2001:db8::1')).toBe(true);
      expect(proxies.isTrusted('2001:db9::1')).toBe(false);
      expect(proxies.isTrusted('')).toBe(false);
    }
  });

  it('never believes X-Forwarded-For from an untrusted peer', () => {
    expect(proxies.clientIp('203.0.113.9', '198.51.100.1')).toBe('203.0.113.9');
    expect(proxies.clientIp('::ffff:198.51.100.2', '10.0.0.1')).toBe('198.51.100.2');
  });

  it('takes the rightmost untrusted hop from a trusted peer; a malformed hop falls back to the peer', () => {
    expect(proxies.clientIp('10.0.0.7', '198.51.100.1, 203.0.113.5, 10.0.0.8')).toBe('203.0.113.5');
    expect(proxies.clientIp('10.0.0.7', ['198.51.100.1', '10.0.0.8'])).toBe('198.51.100.1');
    expect(proxies.clientIp('10.0.0.7', 'not-an-ip, 10.0.0.8')).toBe('10.0.0.7');
    expect(proxies.clientIp('10.0.0.7', '10.0.0.9')).toBe('10.0.0.7');
  });

  it('trusts nobody without entries', () => {
    const none = createTrustedProxies([]);
    expect(none.any).toBe(false);
    expect(none.isTrusted('127.0.0.1')).toBe(false);
    expect(none.clientIp('127.0.0.1', '198.51.100.1')).toBe('127.0.0.1');
  });
});

describe('checkTrustedProxy', () => {
  it('refuses what is not an address or CIDR', () => {
    expect(checkTrustedProxy('10.0.0.0/8')).toBeUndefined();
    expect(checkTrustedProxy('10.0.0.0/33')).toMatch(/prefix length/);
    expect(checkTrustedProxy('example.com')).toMatch(/not an IP/);
    expect(checkTrustedProxy('10.0.0.0/8/1')).toMatch(/not an IP/);
  });

  it('refuses an empty prefix: "10.0.0.0/" would otherwise be a /0 that trusts every peer', () => {
    expect(checkTrustedProxy('10.0.0.0/')).toBe('"10.0.0.0/" is not an IP address or CIDR (prefix missing)');
    expect(checkTrustedProxy('2001:db8::/')).toMatch(/prefix missing/);
  });

  it('refuses a prefix that is not a whole number, or out of range for the family', () => {
    for (const entry of ['10.0.0.0/x', '10.0.0.0/8.5', '10.0.0.0/+8', '10.0.0.0/ 8', '10.0.0.0/-1', '10.0.0.0/1e1', '10.0.0.0/0x8', '10.0.0.0/33', '2001:db8::/129']) {
      expect(checkTrustedProxy(entry), entry).toMatch(/invalid prefix length/);
    }
    expect(checkTrustedProxy('10.0.0.0/33')).toMatch(/IPv4 takes a whole number from 0 to 32/);
    expect(checkTrustedProxy('2001:db8::/129')).toMatch(/IPv6 takes a whole number from 0 to 128/);
  });

  it('refuses a range that holds every IPv4 or every IPv6 address, saying to list the proxies', () => {
    for (const entry of ['0.0.0.0/0', '10.0.0.0/0', '::/0', '2001:db8::/0', '::ffff:0:0/96', '::ffff:0.0.0.0/96']) {
      expect(checkTrustedProxy(entry), entry).toMatch(/would trust every IPv[46] address as a proxy.*list the proxies' own addresses/);
    }
    expect(checkTrustedProxy('::/0')).toMatch(/every IPv6 address/);
    expect(checkTrustedProxy('::ffff:0:0/96')).toMatch(/every IPv4 address/);
    // IPv4 peers are checked against IPv6 entries as ::ffff:a.b.c.d, which ::/1 holds.
    expect(checkTrustedProxy('::/1')).toMatch(/every IPv4 address/);
  });

  it('accepts addresses and CIDRs in range', () => {
    for (const entry of ['10.0.0.1', '10.0.0.0/1', '10.0.0.0/32', '::1', '2001:db8::/32', '2001:db8::1/128', '8000::/1', '::ffff:10.0.0.0/104', 'fe80::1%eth0']) {
      expect(checkTrustedProxy(entry), entry).toBeUndefined();
    }
  });
});

describe('createTrustedProxies with a bad entry (a config built in code, not loaded)', () => {
  it('throws, naming the entry, instead of trusting every peer or failing with a bare range error', () => {
    expect(() => createTrustedProxies(['127.0.0.1', '10.0.0.0/'])).toThrow('trustedProxies[1] "10.0.0.0/" is not an IP address or CIDR (prefix missing)');
    expect(() => createTrustedProxies(['10.0.0.0/x'])).toThrow(/^trustedProxies\[0\] "10\.0\.0\.0\/x" has an invalid prefix length/);
    expect(() => createTrustedProxies(['::/0'])).toThrow(/trustedProxies\[0\].*every IPv6 address/);
  });
});
