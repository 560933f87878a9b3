/**
 * Request-target normalization (issue: path safety). The path gatehouse decides on is exactly
 * the path the upstream receives: dot segments and duplicate slashes are resolved here, and
 * whatever cannot be normalized safely is refused with 400 before routing.
 *
 * Refused: encoded `/` or `\` (`%2F`, `%5C`), encoded dot segments (`%2E`), a raw `\`, NUL and
 * control characters, invalid percent-encoding, targets that are not origin-form (absolute-form
 * is accepted only for this gateway's own host), and `*` outside OPTIONS.
 */

export type NormalizedTarget = { ok: true; path: string; query: string } | { ok: false; reason: string };

// Characters allowed raw in a path (RFC 3986 pchar + "/"), besides "%".
const PATH_CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/") PATH_CHAR[c.charCodeAt(0)] = 1;

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

/**
 * Normalize a request target.
 *
 * @example
 * ```ts
 * normalizeTarget('/a//b/./c/../d?x=1'); // { ok: true, path: '/a/b/d', query: '?x=1' }
 * normalizeTarget('/a/%2e%2e/admin');    // { ok: false, reason: 'encoded dot segment' }
 * ```
 */
export function normalizeTarget(target: string, ownHosts?: ReadonlySet<string>): NormalizedTarget {
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
  let needsWork = false;
  let prevSlash = false;
  for (let i = 0; i < end; i++) {
    const c = rest.charCodeAt(i);
    if (c === 37 /* % */) {
      const h1 = i + 1 < end ? rest.charCodeAt(i + 1) : -1;
      const h2 = i + 2 < end ? rest.charCodeAt(i + 2) : -1;
      if (h1 < 0 || h2 < 0 || h1 > 127 || h2 > 127 || HEX[h1]! < 0 || HEX[h2]! < 0) return { ok: false, reason: 'invalid percent-encoding' };
      const byte = HEX[h1]! * 16 + HEX[h2]!;
      if (byte === 0x2f || byte === 0x5c) return { ok: false, reason: 'encoded slash or backslash' };
      if (byte === 0x2e) return { ok: false, reason: 'encoded dot' };
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'encoded control character' };
      i += 2;
      prevSlash = false;
      continue;
    }
    if (c === 92 /* \ */) return { ok: false, reason: 'backslash in path' };
    if (c < 0x20 || c === 0x7f) return { ok: false, reason: 'control character in path' };
    if (c > 0x7e || PATH_CHAR[c] !== 1) return { ok: false, reason: 'character not allowed in path' };
    if (c === 47) {
      if (prevSlash) needsWork = true;
      prevSlash = true;
    } else {
      if (c === 46 /* . */ && prevSlash) needsWork = true;
      prevSlash = false;
    }
  }
  if (!needsWork) return { ok: true, path: end === rest.length ? rest : rest.slice(0, end), query };

  // Resolve dot segments (RFC 3986 §5.2.4) and collapse duplicate slashes.
  const input = rest.slice(0, end).split('/');
  const out: string[] = [];
  const trailing = input[input.length - 1] === '' || input[input.length - 1] === '.' || input[input.length - 1] === '..';
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
