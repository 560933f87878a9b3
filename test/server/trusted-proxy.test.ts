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
});
