import { BlockList, isIP } from 'node:net';

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
  const list = new BlockList();
  entries.forEach((entry, i) => {
    // The config loader refuses these with file:line; a config built in code meets them here.
    const problem = checkTrustedProxy(entry);
    if (problem !== undefined) throw new Error(`trustedProxies[${i}] ${problem}`);
    addEntry(list, entry);
  });
  const check = (ip: string): boolean => {
    if (entries.length === 0 || ip === '') return false;
    const plain = normalizeIp(ip);
    return list.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4');
  };
  // BlockList.check builds a SocketAddress per call (~1 µs). Behind a load balancer the TCP peer
  // is nearly always the same address: remember the last peer's answer (the list never changes).
  // X-Forwarded-For hops vary per client and are checked without it.
  let lastPeer = '';
  let lastTrusted = false;
  const isTrusted = (ip: string): boolean => {
    if (ip !== lastPeer) {
      lastTrusted = check(ip);
      lastPeer = ip;
    }
    return lastTrusted;
  };
  return {
    any: entries.length > 0,
    isTrusted,
    clientIp(peerIp, forwardedFor) {
      if (entries.length === 0 || forwardedFor === undefined || !isTrusted(peerIp)) return normalizeIp(peerIp);
      const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = hops[i]!.trim();
        if (isIP(hop) === 0) return normalizeIp(peerIp);
        if (!check(hop)) return hop;
      }
      return normalizeIp(peerIp);
    },
  };
}

/** `::ffff:127.0.0.1` → `127.0.0.1` */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/**
 * Check one trustedProxies entry: an IP address, or a CIDR `address/prefix` with a whole-number
 * prefix in range for the family. A range that holds every IPv4 or every IPv6 address (`/0`,
 * `::ffff:0:0/96`) is refused: anyone could then pick their own client IP with X-Forwarded-For.
 * Returns the problem (without the key path), or undefined when the entry is good.
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
  const list = new BlockList();
  addEntry(list, entry);
  const everyV4 = list.check('0.0.0.0', 'ipv4') && list.check('255.255.255.255', 'ipv4');
  const everyV6 = list.check('::', 'ipv6') && list.check('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ipv6');
  if (everyV4 || everyV6) {
    return `"${entry}" would trust every ${everyV6 ? 'IPv6' : 'IPv4'} address as a proxy, so any client could set its own X-Forwarded-For; list the proxies' own addresses or subnets`;
  }
  return undefined;
}

/**
 * Check that an entry is an IP address or a CIDR `address/prefix` with a whole-number prefix in
 * range for its family. Returns the problem (without the key path), or undefined.
 *
 * @example
 * ```ts
 * checkAddressRange('2001:db8::/32'); // undefined
 * checkAddressRange('10.0.0.0/33'); // '"10.0.0.0/33" has an invalid prefix length (…)'
 * ```
 */
export function checkAddressRange(entry: string): string | undefined {
  const [addr, bits, extra] = entry.split('/');
  const family = isIP(addr ?? '');
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR`;
  if (bits === undefined) return undefined;
  if (bits === '') return `"${entry}" is not an IP address or CIDR (prefix missing)`;
  const max = family === 6 ? 128 : 32;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `"${entry}" has an invalid prefix length (IPv${family} takes a whole number from 0 to ${max})`;
  return undefined;
}

/** Add a checked entry (address or CIDR) to the list. */
export function addEntry(list: BlockList, entry: string): void {
  const [addr, bits] = entry.split('/') as [string, string | undefined];
  const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) list.addAddress(addr, family);
  else list.addSubnet(addr, Number(bits), family);
}
