/**
 * The token handler's cookie names, without the cookies' encryption (this module loads no jose):
 * the route compiler uses it for every config with a token handler, to keep gatehouse's cookies
 * away from upstreams.
 */

/**
 * The configured `cookiePrefix` without its `__Host-` or `__Secure-` prefix: what every one of
 * gatehouse's cookie names is built on.
 *
 * @example
 * ```ts
 * cookieStem('__Host-gh'); // 'gh'
 * cookieStem('myapp');     // 'myapp'
 * ```
 */
export function cookieStem(prefix: string): string {
  if (prefix.startsWith('__Host-')) return prefix.slice('__Host-'.length);
  if (prefix.startsWith('__Secure-')) return prefix.slice('__Secure-'.length);
  return prefix;
}

/**
 * Name prefixes that cover every cookie gatehouse sets under `cookiePrefix`: the prefix as
 * configured (the access-token cookie), the `__Secure-` form (path-scoped cookies under a
 * `__Host-` prefix) and the `__Host-` form (the login cookie, always host-only). Each ends with
 * the `-` before the cookie's kind, so `__Host-ghost` is not under `__Host-gh`.
 *
 * @example
 * ```ts
 * gatehouseCookiePrefixes('__Host-gh'); // ['__Host-gh-', '__Secure-gh-']
 * gatehouseCookiePrefixes('myapp');     // ['myapp-', '__Host-myapp-', '__Secure-myapp-']
 * ```
 */
export function gatehouseCookiePrefixes(prefix: string): string[] {
  const stem = cookieStem(prefix);
  return [...new Set([`${prefix}-`, `__Host-${stem}-`, `__Secure-${stem}-`])];
}
