/**
 * Header handling for forwarding (RFC 9110 §7.6.1). Hot path: works on `rawHeaders` pairs and
 * builds one flat array for undici; no regexes per request.
 */

/**
 * Hop-by-hop headers: never forwarded in either direction. `expect` is answered by gatehouse
 * itself (RFC 9110 §10.1.1: `100 Continue` once the request is granted, 417 otherwise; see
 * server/listener.ts), and undici refuses to send it (`NotSupportedError`, which was a 502).
 */
export const HOP_BY_HOP = new Set([
  'connection',
  'expect',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Headers gatehouse sets on the upstream request itself: any incoming value is dropped first
 * so that a client can never spoof them.
 */
export const GATEWAY_SET = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-request-id', 'x-real-ip', 'host', 'client-cert', 'client-cert-chain']);

const CLIENT_CERT_FIELDS = new WeakMap<object, string>();

/**
 * RFC 9440 `Client-Cert`: the client's TLS certificate as a structured-field byte sequence
 * (`:` base64 DER `:`), built once per certificate (one per TLS connection).
 *
 * @example
 * ```ts
 * clientCertField(socket.getPeerCertificate()); // ':MIIB…:'
 * ```
 */
export function clientCertField(cert: { raw: Buffer }): string {
  let field = CLIENT_CERT_FIELDS.get(cert);
  if (field === undefined) {
    field = `:${cert.raw.toString('base64')}:`;
    CLIENT_CERT_FIELDS.set(cert, field);
  }
  return field;
}

/** Names listed in a `Connection` header (lowercased), or null when there are none. */
export function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  // Hot path: nearly every upstream answer says just `keep-alive` or `close`.
  if (typeof value === 'string' && (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close')) return null;
  const joined = Array.isArray(value) ? value.join(',') : value;
  if (joined.length === 0) return null;
  let out: Set<string> | null = null;
  for (const part of joined.split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '' || name === 'close' || name === 'keep-alive') continue;
    (out ??= new Set()).add(name);
  }
  return out;
}

export interface UpstreamHeaderOptions {
  /** Lowercased names that the route sets itself (forwardClaims headers, authorization when replaced). */
  readonly strip: ReadonlySet<string> | null;
  /** Name prefixes of the cookies that belong to gatehouse (token handler; each ends with `-`): removed from `Cookie`. */
  readonly cookiePrefixes: readonly string[] | null;
  /** gatehouse answers CORS on this route (`cors`): the upstream's `Access-Control-*` answer headers are dropped. */
  readonly ownsCors: boolean;
  /** `headers.request.set`: sent upstream (the client's headers of these names are in `strip`). */
  readonly requestSet?: readonly [string, string][] | null;
  /** `headers.response.remove`: dropped from the upstream's answer. */
  readonly responseRemove?: ReadonlySet<string> | null;
  /** `headers.response.set`: on the upstream's answer, replacing its headers of these names. */
  readonly responseSet?: readonly [string, string][] | null;
  /** `securityHeaders`: added to an upstream's final answer that has none of that name (a request without a token). */
  readonly answerDefaults?: readonly [string, string][] | null;
  /** The same for a request that carried a token (`Cache-Control: no-store` among them). */
  readonly answerDefaultsWithToken?: readonly [string, string][] | null;
}

/**
 * Build the flat `[name, value, …]` array for the upstream request from the client's raw headers.
 *
 * @example
 * ```ts
 * upstreamHeaders(req.rawHeaders, req.headers.connection, { strip: null, cookiePrefixes: null, ownsCors: false });
 * ```
 */
export function upstreamHeaders(raw: readonly string[], connection: string | string[] | undefined, options: UpstreamHeaderOptions): string[] {
  const named = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : HTTP/2 pseudo-header */) continue;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || GATEWAY_SET.has(lower)) continue;
    if (named !== null && named.has(lower)) continue;
    if (options.strip !== null && options.strip.has(lower)) continue;
    if (lower === 'cookie' && options.cookiePrefixes !== null) {
      const kept = stripCookies(raw[i + 1]!, options.cookiePrefixes);
      if (kept !== '') out.push(name, kept);
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  return out;
}

function stripCookies(header: string, prefixes: readonly string[]): string {
  if (!prefixes.some((p) => header.includes(p))) return header;
  return header
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c !== '' && !prefixes.some((p) => c.startsWith(p)))
    .join('; ');
}

/**
 * An upstream's `Set-Cookie` without the cookies named under gatehouse's prefixes (token
 * handler): an upstream may not plant, swap or clear the browser's gatehouse session. Returns
 * the value itself when nothing is dropped, `undefined` when everything is.
 *
 * @example
 * ```ts
 * upstreamSetCookies(['__Host-gh-at=x; Path=/', 'theme=dark'], ['__Host-gh-', '__Secure-gh-']); // ['theme=dark']
 * ```
 */
export function upstreamSetCookies(value: string | string[], prefixes: readonly string[]): string | string[] | undefined {
  if (typeof value === 'string') return gatehouseCookie(value, prefixes) ? undefined : value;
  let kept: string[] | null = null;
  for (let i = 0; i < value.length; i++) {
    if (gatehouseCookie(value[i]!, prefixes)) kept ??= value.slice(0, i);
    else kept?.push(value[i]!);
  }
  if (kept === null) return value;
  return kept.length === 0 ? undefined : kept;
}

function gatehouseCookie(setCookie: string, prefixes: readonly string[]): boolean {
  const eq = setCookie.indexOf('=');
  const name = (eq === -1 ? setCookie : setCookie.slice(0, eq)).trim();
  return prefixes.some((p) => name.startsWith(p));
}

/**
 * An upstream's `Location` as the client must see it (what nginx's `proxy_redirect default`
 * does): a URL on the upstream's own origin under its base path becomes a path on the gateway
 * (`http://10.0.0.5:8080/base/orders/7` → `/orders/7`), and on a `stripPrefix` route the prefix
 * goes back on (`/api/orders/7`); so does a path under the base path, and the upstream's address
 * with its default port spelled out (`http://api:80/…` for `http://api`). Anything else — another
 * host, a path outside the base path, a relative reference — is left as it is.
 *
 * @example
 * ```ts
 * publicLocation('http://10.0.0.5:8080/base/orders/7?x=1', 'http://10.0.0.5:8080', '/base', '/api'); // '/api/orders/7?x=1'
 * publicLocation('https://idp.example.com/login', 'http://10.0.0.5:8080', '', '');                  // unchanged
 * ```
 */
export function publicLocation(location: string, origin: string, basePath: string, prefix: string): string {
  let rest: string;
  if (location.charCodeAt(0) === 47 /* / */ && location.charCodeAt(1) !== 47) {
    if (basePath === '' && prefix === '') return location;
    rest = location;
  } else {
    let n = origin.length;
    if (location.length < n || location.slice(0, n).toLowerCase() !== origin) return location;
    let next = location.charCodeAt(n);
    if (next === 58 /* : */) {
      // The default port spelled out (`http://api:80/…` for an upstream `http://api`) is the same origin.
      const port = defaultPortSuffix(origin);
      if (port === '' || location.slice(n, n + port.length) !== port) return location;
      n += port.length;
      next = location.charCodeAt(n);
    }
    if (location.length > n && next !== 47 && next !== 63 /* ? */ && next !== 35 /* # */) return location; // http://host:80801…
    rest = location.length === n || next !== 47 ? '/' + location.slice(n) : location.slice(n);
  }
  if (basePath !== '') {
    if (!rest.startsWith(basePath)) return location;
    const after = rest.charCodeAt(basePath.length);
    if (rest.length > basePath.length && after !== 47 && after !== 63 && after !== 35) return location; // /basement
    rest = rest.slice(basePath.length);
    if (rest === '' || rest.charCodeAt(0) !== 47) rest = '/' + rest;
  }
  return prefix === '' ? rest : prefix + rest;
}

/** `:80` or `:443` for an origin without a port of its own, else ''. */
function defaultPortSuffix(origin: string): string {
  if (/:\d+$/.test(origin)) return '';
  return origin.startsWith('https:') ? ':443' : origin.startsWith('http:') ? ':80' : '';
}

/**
 * Remove an upstream's CORS answer headers (`Access-Control-*`): on a route whose CORS gatehouse
 * answers, a page on an origin that is not listed must not be let in by the upstream's own.
 */
export function dropCorsHeaders(headers: Record<string, string | string[] | undefined>): void {
  for (const name in headers) if (name.startsWith('access-control-')) delete headers[name];
}

/** Response headers that never go back to the client. */
export function isHopByHopResponseHeader(lower: string, named: Set<string> | null): boolean {
  return HOP_BY_HOP.has(lower) || (named !== null && named.has(lower));
}

/** `Forwarded` (RFC 7239) element for one hop. IPv6 addresses are quoted and bracketed. */
export function forwardedElement(clientIp: string, proto: string, host: string | undefined): string {
  const forIp = clientIp.includes(':') ? `"[${clientIp}]"` : clientIp;
  let out = `for=${forIp};proto=${proto}`;
  // Hot path: a Host value with a quote or backslash is rare; only then is it cleaned.
  if (host) out += `;host="${host.includes('"') || host.includes('\\') ? host.replace(/["\\]/g, '') : host}"`;
  return out;
}
