import { describe, expect, it } from 'vitest';
import { hostProblem, isHost } from '../../src/route/host.js';

describe('hostProblem (RFC 9112 §3.2)', () => {
  it('refuses more than one Host line in any spelling, HTTP/2 included', () => {
    expect(hostProblem(['Host', 'a', 'Accept', '*/*', 'host', 'b'], 'a', true)).toBe('more than one Host header');
    expect(hostProblem(['HoSt', 'a', 'HOST', 'a'], 'a', false)).toBe('more than one Host header');
    expect(hostProblem([':authority', 'a', 'host', 'a', 'host', 'b'], 'a', false)).toBe('more than one Host header');
  });
  it('needs a Host on HTTP/1.1 only', () => {
    expect(hostProblem(['Accept', '*/*'], undefined, true)).toBe('no Host header');
    expect(hostProblem(['Accept', '*/*'], undefined, false)).toBeNull();
  });
  it('refuses an empty Host first thing, and an invalid one after a valid one', () => {
    expect(hostProblem(['Host', ''], '', true)).toBe('Host is not a host[:port]');
    expect(hostProblem(['Host', 'a.example'], 'a.example', true)).toBeNull();
    expect(hostProblem(['Host', 'a.example/x'], 'a.example/x', true)).toBe('Host is not a host[:port]');
    expect(hostProblem(['Host', ''], '', true)).toBe('Host is not a host[:port]');
  });
  it('checks the one value it has (HTTP/2: :authority, which a Host beside it must match)', () => {
    expect(hostProblem(['Host', 'api.example.com:443'], 'api.example.com:443', true)).toBeNull();
    expect(hostProblem([':authority', 'a/b'], undefined, false, 'a/b')).toBe('Host is not a host[:port]');
    expect(hostProblem([':authority', 'a.example', 'host', 'b.example'], 'b.example', false, 'a.example')).toBe('Host differs from :authority');
    expect(hostProblem([':authority', 'a.example', 'host', 'A.example'], 'A.example', false, 'a.example')).toBeNull();
    // Names that are four letters but not Host are not counted.
    expect(hostProblem(['Hose', 'x', 'Date', 'y', 'Host', 'a'], 'a', true)).toBeNull();
  });
});

describe('isHost', () => {
  it('accepts reg-names, IPv4, IP literals and ports of up to five digits (an empty port too, RFC 3986 §3.2.3)', () => {
    for (const ok of ['a', 'api.example.com', 'API-1.Example_x.com:8443', '127.0.0.1:80', '[::1]', '[::1]:8080', '[2001:db8::ffff:192.0.2.1]', '[::1]:', 'xn--bcher-kva.example', 'host:', "a!$&'()*+,;=b", 'caf%C3%A9.example']) {
      expect(isHost(ok), ok).toBe(true);
    }
  });
  it('refuses paths, user info, spaces, quotes, non-ASCII, empty hosts, zone ids and bad ports', () => {
    for (const bad of ['', ':80', 'a/b', 'a?b', 'a#b', 'user@a', 'a b', '"a"', 'a\\b', 'café.example', 'a:80:80', 'a:8o', 'a:123456', '[]', '[::1', '[::1]x', '[fe80::1%25eth0]', '[g::1]', 'a<b>']) {
      expect(isHost(bad), bad).toBe(false);
    }
  });
});
