import { BlockList, isIP } from 'node:net';

/**
 * IP addresses and CIDR ranges as configured (`trustedProxies`, `networks`, `allowFrom`,
 * `admin.allowFrom`): one entry check, one matcher. Every list of addresses in the config goes
 * through these two.
 */

/** Addresses a set remembers its answers for (a client's address repeats across its requests). */
const MEMO_SIZE = 4096;

/**
 * A set of IP addresses and CIDR ranges, asked per request. `BlockList.check` builds a
 * `SocketAddress` per call (about 1 µs), so answers are remembered per address, up to
 * {@link MEMO_SIZE} of them (then forgotten at once: the list never changes, only the memo).
 * IPv4 and IPv4-mapped IPv6 (`::ffff:10.1.2.3`) match each other's ranges; what is not an
 * address matches nothing.
 *
 * @example
 * ```ts
 * const office = createAddressSet(['10.0.0.0/8', '2001:db8::/32']);
 * office.has('10.1.2.3'); // true
 * office.has('not an address'); // false
 * ```
 */
export interface AddressSet {
  has(ip: string): boolean;
}

export function createAddressSet(entries: readonly string[]): AddressSet {
  const list = new BlockList();
  for (const entry of entries) addEntry(list, entry);
  let memo = new Map<string, boolean>();
  return {
    has(ip) {
      let inside = memo.get(ip);
      if (inside === undefined) {
        const family = isIP(ip);
        inside = family !== 0 && list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
        if (memo.size >= MEMO_SIZE) memo = new Map();
        memo.set(ip, inside);
      }
      return inside;
    },
  };
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

/** `::ffff:127.0.0.1` → `127.0.0.1` */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** Add a checked entry (address or CIDR) to the list. */
function addEntry(list: BlockList, entry: string): void {
  const [addr, bits] = entry.split('/') as [string, string | undefined];
  const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) list.addAddress(addr, family);
  else list.addSubnet(addr, Number(bits), family);
}
