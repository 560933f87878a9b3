import { isIP } from 'node:net';
import { checkAddressRange, createAddressSet, normalizeIp } from './addresses.js';

/**
 * Decides the client's address and scheme. Only a peer listed in `trustedProxies` (IPs or
 * CIDRs) is believed about `X-Forwarded-For` / `X-Forwarded-Proto`; for anyone else the TCP
 * peer is the client, whatever the headers say.
 *
 * @example
 * ```ts
 * const proxies = createTrustedProxies(['10.0.0.0/8']);
 * proxies.clientIp('10.1.2.3', '203.0.113.9, 10.0.0.7'); // '203.0.113.9'
 * ```
 */
export interface TrustedProxies {
  readonly any: boolean;
  isTrusted(ip: string): boolean;
  /** The rightmost address in X-Forwarded-For that is not a trusted proxy. */
  clientIp(peerIp: string, forwardedFor: string | string[] | undefined): string;
}

export function createTrustedProxies(entries: readonly string[]): TrustedProxies {
  entries.forEach((entry, i) => {
    // The config loader refuses these with file:line; a config built in code meets them here.
    const problem = checkTrustedProxy(entry);
    if (problem !== undefined) throw new Error(`trustedProxies[${i}] ${problem}`);
  });
  // The peer (nearly always the same load balancer) and the X-Forwarded-For hops alike: the
  // set remembers its answers per address.
  const proxies = createAddressSet(entries);
  const any = entries.length > 0;
  const isTrusted = (ip: string): boolean => any && proxies.has(ip);
  return {
    any,
    isTrusted,
    clientIp(peerIp, forwardedFor) {
      if (!any || forwardedFor === undefined || !isTrusted(peerIp)) return normalizeIp(peerIp);
      const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = hops[i]!.trim();
        if (isIP(hop) === 0) return normalizeIp(peerIp);
        if (!proxies.has(hop)) return hop;
      }
      return normalizeIp(peerIp);
    },
  };
}

/**
 * Check one trustedProxies entry: an IP address or CIDR ({@link checkAddressRange}), and no range
 * that holds every IPv4 or every IPv6 address (`/0`, `::ffff:0:0/96`): anyone could then pick
 * their own client IP with X-Forwarded-For. Returns the problem (without the key path), or
 * undefined when the entry is good.
 *
 * @example
 * ```ts
 * checkTrustedProxy('10.0.0.0/8'); // undefined
 * checkTrustedProxy('10.0.0.0/'); // '"10.0.0.0/" is not an IP address or CIDR (prefix missing)'
 * ```
 */
export function checkTrustedProxy(entry: string): string | undefined {
  const problem = checkAddressRange(entry);
  if (problem !== undefined || !entry.includes('/')) return problem;
  const range = createAddressSet([entry]);
  const everyV4 = range.has('0.0.0.0') && range.has('255.255.255.255');
  const everyV6 = range.has('::') && range.has('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  if (everyV4 || everyV6) {
    return `"${entry}" would trust every ${everyV6 ? 'IPv6' : 'IPv4'} address as a proxy, so any client could set its own X-Forwarded-For; list the proxies' own addresses or subnets`;
  }
  return undefined;
}
