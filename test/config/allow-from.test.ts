import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatConfigIssue } from '../../src/errors.js';
import { createAddressSet } from '../../src/server/addresses.js';
import { issuesOf } from '../helpers/config.js';

/** `networks` and `routes[].allowFrom` (docs/configuration.md): what loads, and every bad entry named by file, line and key. */
const config = (networks: string, allowFrom: string) => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
${networks}
routes:
  - { name: admin, path: /admin, upstream: api, public: true, allowFrom: ${allowFrom} }
`;

describe('routes[].allowFrom at load', () => {
  it('is absent (any address) unless set', () => {
    const loaded = loadConfigText(config('', '[10.0.0.1]').replace(', allowFrom: [10.0.0.1]', ''), 'gatehouse.yaml', {});
    expect(loaded.routes[0]!.allowFrom).toBeNull();
    expect(loaded.networks).toEqual({});
  });

  it('takes addresses and CIDRs of both families, and expands names of networks in place', () => {
    const loaded = loadConfigText(config('networks: { office: [10.0.0.0/8, "2001:db8::/32"], vpn: [192.0.2.7] }', '[office, 127.0.0.1, "::1", vpn, 0.0.0.0/0]'), 'gatehouse.yaml', {});
    expect(loaded.routes[0]!.allowFrom).toEqual(['10.0.0.0/8', '2001:db8::/32', '127.0.0.1', '::1', '192.0.2.7', '0.0.0.0/0']);
    expect(loaded.networks).toEqual({ office: ['10.0.0.0/8', '2001:db8::/32'], vpn: ['192.0.2.7'] });
  });

  it('refuses a name that no networks entry has, listing the names there are, at its line', () => {
    const issues = issuesOf(config('networks: { office: [10.0.0.0/8] }', '[ofice]'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: 'gatehouse.yaml', line: 5, path: 'routes[0].allowFrom[0]' });
    expect(formatConfigIssue(issues[0]!)).toMatch(/^gatehouse\.yaml:5:\d+ routes\[0\]\.allowFrom\[0\] names no entry of networks \(known: office\)$/);
    expect(issuesOf(config('', '[office]'))[0]!.message).toBe('names no entry of networks (known: none)');
  });

  it('refuses what is neither an address, a CIDR nor a name', () => {
    const issues = issuesOf(config('', '[10.0.0.0/33, "10.0.0.0/", 10.0.0.256, "2001:db8::/129", host.example.com]'));
    expect(issues.map((i) => i.path)).toEqual(['routes[0].allowFrom[0]', 'routes[0].allowFrom[1]', 'routes[0].allowFrom[2]', 'routes[0].allowFrom[3]', 'routes[0].allowFrom[4]']);
    expect(issues[0]!.message).toBe('"10.0.0.0/33" has an invalid prefix length (IPv4 takes a whole number from 0 to 32), nor the name of a networks entry');
    expect(issues[1]!.message).toMatch(/prefix missing/);
    expect(issues[4]!.message).toBe('"host.example.com" is not an IP address or CIDR, nor the name of a networks entry');
  });

  it('refuses an empty list (a route nobody could use) and a name twice', () => {
    expect(issuesOf(config('', '[]'))[0]).toMatchObject({ path: 'routes[0].allowFrom', line: 5 });
    expect(issuesOf(config('', '[10.0.0.1, 10.0.0.1]'))[0]).toMatchObject({ path: 'routes[0].allowFrom' });
  });

  it('refuses a bad networks entry, an empty network and a name that could be read as an address', () => {
    const bad = issuesOf(config('networks:\n  office: [10.0.0.0/8, "10.1.0.0/x"]', '[office]'));
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ path: 'networks.office[1]', line: 4 });
    expect(bad[0]!.message).toMatch(/"10\.1\.0\.0\/x" has an invalid prefix length/);
    expect(issuesOf(config('networks: { office: [] }', '[10.0.0.1]'))[0]).toMatchObject({ path: 'networks.office' });
    const named = issuesOf(config('networks: { "10.0.0.1": [10.0.0.2] }', '[10.0.0.1]'));
    expect(named).toHaveLength(1);
    expect(named[0]).toMatchObject({ path: 'networks.10.0.0.1', line: 3 });
    expect(named[0]!.message).toMatch(/^is not a usable name: a letter, then letters, digits/);
  });
});

describe('createAddressSet', () => {
  it('matches addresses and ranges of both families, IPv4-mapped IPv6 as IPv4', () => {
    const set = createAddressSet(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32']);
    expect(set.has('10.255.0.1')).toBe(true);
    expect(set.has('11.0.0.1')).toBe(false);
    expect(set.has('192.0.2.7')).toBe(true);
    expect(set.has('192.0.2.8')).toBe(false);
    expect(set.has('2001:db8:1::5')).toBe(true);
    expect(set.has('2001:db9::5')).toBe(false);
    expect(set.has('::ffff:10.1.2.3')).toBe(true);
  });

  it('never lets through what is not an address', () => {
    const set = createAddressSet(['0.0.0.0/0', '::/0']);
    for (const junk of ['', 'unknown', '10.0.0.1 ', '10.0.0.1, 10.0.0.2', '[::1]', '10.0.0.1/8']) expect(set.has(junk)).toBe(false);
    expect(set.has('203.0.113.9')).toBe(true);
    expect(set.has('2001:db8::1')).toBe(true);
  });

  it('answers the same once its memory of addresses is full and starts over', () => {
    const set = createAddressSet(['10.0.0.0/16']);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 10_000; i++) {
        const inside = `10.0.${(i >> 8) & 255}.${i & 255}`;
        const outside = `10.1.${(i >> 8) & 255}.${i & 255}`;
        expect(set.has(inside)).toBe(true);
        expect(set.has(outside)).toBe(false);
      }
    }
  });
});
