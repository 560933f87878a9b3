/**
 * Request-target normalization (issue: path safety). The path gatehouse decides on is exactly
 * the path the upstream receives: dot segments and duplicate slashes are resolved here,
 * percent-encoded unreserved characters are decoded and the hex digits of the encodings that
 * remain are uppercased (RFC 3986 §6.2.2), and whatever cannot be normalized safely is refused
 * with 400 before routing. So `/orders/%65xport` is routed, checked and forwarded as
 * `/orders/export`, never as an `{id}` that the upstream decodes into `export`.
 *
 * Refused: encoded `/` or `\` (`%2F`, `%5C`), encoded dots (`%2E`), a raw `\`, NUL and control
 * characters, invalid percent-encoding, a raw `;` (path parameters, which Tomcat, Jetty and
 * Spring strip before mapping: `/orders/export;x` reaches their `/orders/export`) unless
 * `gateway.paths.allowSemicolons`, and even then a `.`, `..` or empty segment with parameters
 * (`..;/`), targets that are not origin-form (absolute-form is accepted only for this gateway's
 * own host), and the asterisk-form `*` of any method, OPTIONS included (gatehouse answers no
 * server-wide OPTIONS).
 */

export type NormalizedTarget = { ok: true; path: string; query: string } | { ok: false; reason: string };

// Characters allowed raw in a path without a second look (RFC 3986 pchar + "/"), but "%" and
// ";", which take the slow branch of the scan.
const PATH_CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@/") PATH_CHAR[c.charCodeAt(0)] = 1;

// Unreserved characters that are decoded when percent-encoded (RFC 3986 §2.3, §6.2.2.2). The
// dot is unreserved too, but `%2E` stays refused: it exists only to smuggle dot segments.
const DECODED = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~') DECODED[c.charCodeAt(0)] = 1;

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

/** The value of a hex digit's char code (either case), or -1. Shared by every `%XX` reader. */
export function hexDigit(c: number): number {
  return c >= 0 && c < 128 ? HEX[c]! : -1;
}

/** What each byte becomes in a normalized path: the character (unreserved) or `%XX`, uppercase. */
const SPELLING: string[] = [];
for (let b = 0; b < 256; b++) {
  SPELLING.push(b < 128 && DECODED[b] === 1 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`);
}

/**
 * Normalize a request target. `allowSemicolons` (from `gateway.paths.allowSemicolons`) lets
 * path parameters through; the route table then matches each segment without them.
 *
 * @example
 * ```ts
 * normalizeTarget('/a//b/./c/../d?x=1');  // { ok: true, path: '/a/b/d', query: '?x=1' }
 * normalizeTarget('/orders/%65xport');    // { ok: true, path: '/orders/export', query: '' }
 * normalizeTarget('/a/%2e%2e/admin');     // { ok: false, reason: 'encoded dot' }
 * normalizeTarget('/pub/..;/admin', undefined, true); // { ok: false, reason: 'dot or empty segment with parameters' }
 * ```
 */
export function normalizeTarget(target: string, ownHosts?: ReadonlySet<string>, allowSemicolons = false): NormalizedTarget {
  if (target.length === 0) return { ok: false, reason: 'empty request target' };
  let rest = target;
  if (rest.charCodeAt(0) !== 47 /* / */) {
    // absolute-form (RFC 9112 §3.2.2): only for this gateway's own host, never a proxy request.
    const m = /^https?:\/\/([^/?#]+)(.*)$/i.exec(rest);
    if (!m) return { ok: false, reason: 'request target is not in origin-form' };
    if (!ownHosts || !ownHosts.has(m[1]!.toLowerCase())) return { ok: false, reason: 'absolute-form target for another host' };
    rest = m[2] || '/';
    if (rest.charCodeAt(0) !== 47) return { ok: false, reason: 'request target is not in origin-form' };
  }
  let end = rest.length;
  let query = '';
  const q = rest.indexOf('?');
  if (q !== -1) {
    end = q;
    query = rest.slice(q);
    for (let i = 0; i < query.length; i++) {
      const c = query.charCodeAt(i);
      if (c < 0x21 || c === 0x7f || c > 0x7e) return { ok: false, reason: 'control or non-ASCII character in query' };
    }
  }
  const hash = rest.indexOf('#');
  if (hash !== -1 && hash < end) return { ok: false, reason: 'fragment in request target' };

  // Validate characters and percent-encoding; note whether any normalization is needed.
  // Hot path: a plain path only takes the first branch of the loop.
  let dots = false; // dot segments or duplicate slashes to resolve
  let spelling = false; // an encoding to decode or to uppercase
  let prevSlash = false;
  let segmentStart = 1; // index after the last "/"
  let segmentHasParams = false;
  for (let i = 0; i < end; i++) {
    const c = rest.charCodeAt(i);
    if (c <= 0x7e && PATH_CHAR[c] === 1) {
      if (c === 47) {
        if (prevSlash) dots = true;
        prevSlash = true;
        segmentStart = i + 1;
        segmentHasParams = false;
      } else {
        if (c === 46 /* . */ && prevSlash) dots = true;
        prevSlash = false;
      }
      continue;
    }
    if (c === 37 /* % */) {
      const h1 = i + 1 < end ? rest.charCodeAt(i + 1) : -1;
      const h2 = i + 2 < end ? rest.charCodeAt(i + 2) : -1;
      const hi = hexDigit(h1);
      const lo = hexDigit(h2);
      if (hi < 0 || lo < 0) return { ok: false, reason: 'invalid percent-encoding' };
      const byte = hi * 16 + lo;
      if (byte === 0x2f || byte === 0x5c) return { ok: false, reason: 'encoded slash or backslash' };
      if (byte === 0x2e) return { ok: false, reason: 'encoded dot' };
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'encoded control character' };
      // An unreserved character to decode (§6.2.2.2), or lowercase hex to uppercase (§6.2.2.1).
      if ((byte < 128 && DECODED[byte] === 1) || h1 >= 97 || h2 >= 97) spelling = true;
      i += 2;
      prevSlash = false;
      continue;
    }
    if (c === 59 /* ; */) {
      if (!allowSemicolons) return { ok: false, reason: 'semicolon in path' };
      // `..;x` is `..` to a server that strips path parameters, and `/;x/` an empty segment:
      // after gatehouse resolved the path, either would move the upstream's path elsewhere.
      if (!segmentHasParams) {
        const name = i - segmentStart;
        if (name === 0 || (name === 1 && rest.charCodeAt(segmentStart) === 46) || (name === 2 && rest.charCodeAt(segmentStart) === 46 && rest.charCodeAt(segmentStart + 1) === 46)) {
          return { ok: false, reason: 'dot or empty segment with parameters' };
        }
        segmentHasParams = true;
      }
      prevSlash = false;
      continue;
    }
    if (c === 92 /* \ */) return { ok: false, reason: 'backslash in path' };
    if (c < 0x20 || c === 0x7f) return { ok: false, reason: 'control character in path' };
    return { ok: false, reason: 'character not allowed in path' };
  }
  if (!dots && !spelling) return { ok: true, path: end === rest.length ? rest : rest.slice(0, end), query };
  // Decoding never makes a "/" or a ".", so it cannot add dot segments: either order is the same.
  const path = spelling ? respell(rest, end) : rest.slice(0, end);
  return dots ? resolveDots(path, query) : { ok: true, path, query };
}

/** `s[0, end)` with every percent-encoding in its one spelling (validated by the caller). */
function respell(s: string, end: number): string {
  let out = '';
  let from = 0;
  for (let i = s.indexOf('%'); i !== -1 && i < end; i = s.indexOf('%', i + 3)) {
    const spelled = SPELLING[HEX[s.charCodeAt(i + 1)]! * 16 + HEX[s.charCodeAt(i + 2)]!]!;
    if (s.charCodeAt(i + 1) === spelled.charCodeAt(1) && s.charCodeAt(i + 2) === spelled.charCodeAt(2)) continue; // already so
    out += s.slice(from, i) + spelled;
    from = i + 3;
  }
  return out + s.slice(from, end);
}

/** Resolve dot segments (RFC 3986 §5.2.4) and collapse duplicate slashes. */
function resolveDots(raw: string, query: string): NormalizedTarget {
  const input = raw.split('/');
  const out: string[] = [];
  const last = input[input.length - 1];
  const trailing = last === '' || last === '.' || last === '..';
  for (let i = 1; i < input.length; i++) {
    const seg = input[i]!;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length === 0) return { ok: false, reason: 'dot segment above the root' };
      out.pop();
      continue;
    }
    out.push(seg);
  }
  let path = '/' + out.join('/');
  if (trailing && out.length > 0) path += '/';
  return { ok: true, path, query };
}
