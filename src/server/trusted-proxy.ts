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
  for (const entry of entries) {
    const [addr, bits] = entry.split('/');
    const family = isIP(addr ?? '') === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr!, family);
    else list.addSubnet(addr!, Number(bits), family);
  }
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

/** Validate trustedProxies entries; returns a message for the first bad one. */
export function checkTrustedProxy(entry: string): string | undefined {
  const [addr, bits, extra] = entry.split('/');
  const family = isIP(addr ?? '');
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR`;
  if (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > (family === 6 ? 128 : 32))) return `"${entry}" has an invalid prefix length`;
  return undefined;
}
