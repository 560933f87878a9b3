/**
 * RateLimit-Policy and RateLimit response fields (draft-ietf-httpapi-ratelimit-headers-11):
 *
 * ```
 * RateLimit-Policy: "per-client";q=100;w=60,"daily";q=10000;w=86400
 * RateLimit: "per-client";r=42;t=1,"daily";r=9521;t=3600
 * ```
 *
 * Both are Structured Field lists whose items are the policy names (sf-strings; names are
 * restricted by the config schema to letters, digits, `_ . -`, so they need no escaping).
 * The policy field is built once per route at compile time; only `RateLimit` is per request.
 */

/**
 * Lower-case field name of RateLimit-Policy, as `ctx.responseHeaders` carries it.
 *
 * @example
 * ```ts
 * ctx.responseHeaders.push([RATELIMIT_POLICY_FIELD, '"p";q=10;w=1']);
 * ```
 */
export const RATELIMIT_POLICY_FIELD = 'ratelimit-policy';

/**
 * Lower-case field name of RateLimit.
 *
 * @example
 * ```ts
 * ctx.responseHeaders.push([RATELIMIT_FIELD, '"p";r=9;t=1']);
 * ```
 */
export const RATELIMIT_FIELD = 'ratelimit';

/**
 * One quota-policy item (§3.1). `q` is the quota in requests over `w` seconds. A window that is
 * not a whole number of seconds is scaled to one that is (the draft allows no sub-second `w`):
 * 5 per 500ms is advertised as 10 per 1 s.
 *
 * @example
 * ```ts
 * policyItem('per-client', 100, 60_000); // '"per-client";q=100;w=60'
 * ```
 */
export function policyItem(name: string, limit: number, windowMs: number): string {
  let seconds = windowMs / 1000;
  let quota = limit;
  if (!Number.isInteger(seconds)) {
    const whole = Math.max(1, Math.round(seconds));
    quota = Math.max(1, Math.floor((limit * whole) / seconds));
    seconds = whole;
  }
  return `"${name}";q=${quota};w=${seconds}`;
}

/**
 * One service-limit item (§4.1): `r` requests remain within the next `t` seconds (rounded up).
 *
 * @example
 * ```ts
 * serviceLimitItem('per-client', 42, 600); // '"per-client";r=42;t=1'
 * ```
 */
export function serviceLimitItem(name: string, remaining: number, windowMs: number): string {
  return `"${name}";r=${remaining < 0 ? 0 : remaining};t=${windowMs <= 0 ? 0 : Math.ceil(windowMs / 1000 - 1e-9)}`;
}
