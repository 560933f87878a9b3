/**
 * The request's Host (RFC 9112 §3.2): an HTTP/1.1 request without one, with more than one
 * `Host` line, or with a value that is not `uri-host [":" port]` is refused with 400 — the
 * RFC's MUST, and a value gatehouse passes on (`X-Forwarded-Host`, `Forwarded: host=`, the HTTPS
 * redirect) must be one host, not a path, user info or a second name.
 */

// reg-name and IPv4 (RFC 3986 §3.2.2): unreserved, pct-encoded ('%' and hex), sub-delims.
const REG_NAME = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=") REG_NAME[c.charCodeAt(0)] = 1;
// Inside an IP-literal's brackets: IPv6 (hex, ':', '.' for an embedded IPv4). No zone id: RFC
// 3986's host has none (RFC 6874's are for a browser's own use, never sent in Host).
const IP_LITERAL = new Uint8Array(128);
for (const c of '0123456789ABCDEFabcdef:.') IP_LITERAL[c.charCodeAt(0)] = 1;

/**
 * Why the request's Host is refused, or null. `host`: the parsed `Host`; `http11`: an HTTP/1.1
 * request, which must carry one (HTTP/1.0 and HTTP/2 may go without); `authority`: HTTP/2's
 * `:authority`, which a `Host` beside it must match.
 *
 * @example
 * ```ts
 * hostProblem(['Host', 'api.example.com'], 'api.example.com', true);        // null
 * hostProblem(['Host', 'a', 'host', 'b'], 'a', true);                        // 'more than one Host header'
 * hostProblem(['Host', 'a/b?'], 'a/b?', true);                               // 'Host is not a host[:port]'
 * hostProblem([], undefined, true);                                          // 'no Host header'
 * ```
 */
export function hostProblem(rawHeaders: readonly string[], host: string | undefined, http11: boolean, authority?: string): string | null {
  let lines = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) lines++;
  }
  if (lines > 1) return 'more than one Host header';
  if (authority !== undefined) {
    // HTTP/2 (RFC 9113 §8.3.1): a Host beside :authority must name the same; then one is checked.
    if (host !== undefined && host.toLowerCase() !== authority.toLowerCase()) return 'Host differs from :authority';
    host = authority;
  }
  if (host === undefined) return http11 ? 'no Host header' : null;
  // Clients send the same Host request after request: the last one found valid is not scanned again.
  if (host === lastValid) return null;
  if (!isHost(host)) return 'Host is not a host[:port]';
  lastValid = host;
  return null;
}

let lastValid: string | null = null;

/** `uri-host [":" port]` with a non-empty host (RFC 9110 §7.2). */
export function isHost(value: string): boolean {
  let i = 0;
  const n = value.length;
  if (n === 0) return false;
  if (value.charCodeAt(0) === 91 /* [ */) {
    const close = value.indexOf(']');
    if (close < 2) return false;
    for (i = 1; i < close; i++) {
      const c = value.charCodeAt(i);
      if (c >= 128 || IP_LITERAL[c] !== 1) return false;
    }
    i = close + 1;
  } else {
    for (; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c === 58 /* : */) break;
      if (c >= 128 || REG_NAME[c] !== 1) return false;
    }
    if (i === 0) return false;
  }
  if (i === n) return true;
  if (value.charCodeAt(i) !== 58 || n - i - 1 > 5) return false;
  for (i++; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * The host a request addressed: its `Host`, or HTTP/2's `:authority` when it has none (RFC 9113
 * §8.3.1; `hostProblem` has made sure the two agree when both are there). Undefined for an
 * HTTP/1.0 request without `Host`.
 *
 * @example
 * ```ts
 * requestHost(req.headers); // 'api.example.com:8443'
 * ```
 */
export function requestHost(headers: { host?: string; [name: string]: string | string[] | undefined }): string | undefined {
  return headers.host ?? (headers[':authority'] as string | undefined);
}
