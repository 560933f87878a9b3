import { createHash } from 'node:crypto';
import type { RequestContext } from '../pipeline/context.js';

/**
 * One part of a limit key: `claim:NAME` (a validated claim, qualified by the principal's issuer
 * name), `ip` (the client address decided by the trusted-proxy rules), `header:NAME`, or `route`
 * (the route name).
 *
 * @example
 * ```ts
 * const part: KeyPart = { kind: 'claim', name: 'client_id' };
 * ```
 */
export type KeyPart =
  | { readonly kind: 'claim'; readonly name: string }
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'ip' }
  | { readonly kind: 'route' };

/**
 * Extracts the key of one request. Built once per route and policy; hot path.
 *
 * @example
 * ```ts
 * const key: KeyExtractor = compileKey([{ kind: 'ip' }], 'orders');
 * ```
 */
export type KeyExtractor = (ctx: RequestContext) => string;

const CLAIM_NAME = /^[A-Za-z0-9_.:/$-]{1,128}$/;
// RFC 9110 §5.1 field-name token.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;

/**
 * Parse a key spec: parts joined with `+`. Returns the parts, or a message saying what is wrong.
 *
 * @example
 * ```ts
 * parseKeySpec('claim:client_id+ip'); // { parts: [{ kind: 'claim', name: 'client_id' }, { kind: 'ip' }] }
 * parseKeySpec('cookie:x');           // { error: 'part "cookie:x" must be claim:NAME, ip, header:NAME or route' }
 * ```
 */
export function parseKeySpec(spec: string): { parts: KeyPart[]; error?: undefined } | { error: string; parts?: undefined } {
  const parts: KeyPart[] = [];
  const seen = new Set<string>();
  for (const raw of spec.split('+')) {
    const text = raw.trim();
    let part: KeyPart;
    if (text === 'ip') part = { kind: 'ip' };
    else if (text === 'route') part = { kind: 'route' };
    else if (text.startsWith('claim:')) {
      const name = text.slice(6);
      if (!CLAIM_NAME.test(name)) return { error: `part "${text}" needs a claim name (letters, digits, _ . : / $ -)` };
      part = { kind: 'claim', name };
    } else if (text.startsWith('header:')) {
      const name = text.slice(7).toLowerCase();
      if (!HEADER_NAME.test(name)) return { error: `part "${text}" needs a header field name` };
      if (name === 'authorization' || name === 'cookie' || name === 'proxy-authorization') {
        return { error: `part "${text}" would key on a credential; use claim:sub or claim:client_id instead` };
      }
      part = { kind: 'header', name };
    } else {
      return { error: `part "${text}" must be claim:NAME, ip, header:NAME or route` };
    }
    const id = part.kind === 'claim' || part.kind === 'header' ? `${part.kind}:${part.name}` : part.kind;
    if (seen.has(id)) return { error: `part "${text}" appears twice` };
    seen.add(id);
    parts.push(part);
  }
  if (parts.length === 0) return { error: 'is empty' };
  return { parts };
}

/**
 * Whether a key needs a validated token (it reads claims).
 *
 * @example
 * ```ts
 * keyNeedsPrincipal(parseKeySpec('claim:sub+ip').parts!); // true
 * ```
 */
export function keyNeedsPrincipal(parts: readonly KeyPart[]): boolean {
  return parts.some((p) => p.kind === 'claim');
}

/** Longer values are hashed, so a huge header cannot make a huge key. */
const MAX_VALUE_LENGTH = 128;
const NEEDS_ESCAPE = /[|\\]/;
const ESCAPES = /[|\\]/g;

/**
 * One part's value, made safe to join: `|` and `\` escaped, long values replaced by a hash.
 * A missing value is '' (all requests without it share one bucket; see docs/rate-limits.md).
 *
 * @example
 * ```ts
 * keyValue('a|b'); // 'a\\|b'
 * keyValue(42);    // '42'
 * ```
 */
export function keyValue(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value === undefined || value === null) return '';
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') text = value[0];
  else text = JSON.stringify(value) ?? '';
  if (text.length > MAX_VALUE_LENGTH) return `#${createHash('sha256').update(text).digest('base64url')}`;
  if (NEEDS_ESCAPE.test(text)) text = text.replace(ESCAPES, '\\$&');
  return text;
}

/**
 * The key of an IPv6 client is its /64 network: one subscriber usually holds a whole /64, so
 * keying on single addresses would let it rotate through 2^64 buckets. IPv4-mapped addresses
 * (`::ffff:192.0.2.1`) are keyed as the IPv4 address.
 *
 * @example
 * ```ts
 * ipv6Network('2001:db8:0:1:aaaa::1'); // '2001:db8:0:1::/64'
 * ```
 */
export function ipv6Network(ip: string): string {
  const zone = ip.indexOf('%');
  const address = (zone >= 0 ? ip.slice(0, zone) : ip).toLowerCase();
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  const gap = address.indexOf('::');
  let groups: string[];
  if (gap < 0) groups = address.split(':');
  else {
    const left = gap > 0 ? address.slice(0, gap).split(':') : [];
    const right = gap + 2 < address.length ? address.slice(gap + 2).split(':') : [];
    const rightCount = right.length + (right.length > 0 && right[right.length - 1]!.includes('.') ? 1 : 0);
    groups = left;
    for (let i = left.length + rightCount; i < 8; i++) groups.push('0');
    groups.push(...right);
  }
  let out = '';
  for (let i = 0; i < 4; i++) {
    const n = parseInt(groups[i] ?? '0', 16);
    out += `${Number.isNaN(n) ? 0 : n.toString(16)}:`;
  }
  return `${out}:/64`;
}

function extractPart(part: KeyPart, routeName: string): KeyExtractor {
  switch (part.kind) {
    case 'ip':
      return function ipKey(ctx) {
        const ip = ctx.clientIp;
        return ip.includes(':') ? ipv6Network(ip) : ip;
      };
    case 'route': {
      const value = keyValue(routeName);
      return function routeKey() {
        return value;
      };
    }
    case 'claim': {
      // A claim is only as unique as its issuer: the same `sub` from two issuers is two callers.
      // The issuer is the configured name ([A-Za-z0-9_.-], no ':'), so `issuer:value` cannot collide.
      const name = part.name;
      return function claimKey(ctx) {
        const principal = ctx.principal;
        return principal ? `${keyValue(principal.issuer)}:${keyValue(principal.claims[name])}` : '';
      };
    }
    case 'header': {
      const name = part.name;
      return function headerKey(ctx) {
        return keyValue(ctx.headers[name]);
      };
    }
  }
}

/**
 * Build the key extractor of a policy for one route. Parts are joined with `|`.
 *
 * @example
 * ```ts
 * const key = compileKey(parseKeySpec('claim:sub+route').parts!, 'checkout');
 * key(ctx); // 'main:alice|checkout' (issuer main)
 * ```
 */
export function compileKey(parts: readonly KeyPart[], routeName: string): KeyExtractor {
  const extractors = parts.map((p) => extractPart(p, routeName));
  if (extractors.length === 1) return extractors[0]!;
  if (extractors.length === 2) {
    const [first, second] = extractors as [KeyExtractor, KeyExtractor];
    return function pairKey(ctx) {
      return `${first(ctx)}|${second(ctx)}`;
    };
  }
  return function compoundKey(ctx) {
    let key = extractors[0]!(ctx);
    for (let i = 1; i < extractors.length; i++) key += `|${extractors[i]!(ctx)}`;
    return key;
  };
}
