import { GatehouseError, InsufficientScope, StepUpRequired } from '../errors.js';

/** RFC 6750 §3: auth-param values are quoted-strings; `"` and `\` are escaped, CR/LF dropped. */
function quote(value: string): string {
  return '"' + value.replace(/[\r\n]/g, ' ').replace(/(["\\])/g, '\\$1') + '"';
}

/**
 * The `WWW-Authenticate: Bearer` (or `DPoP`, with `dpopAlgs`) challenge for an error, or null
 * when none goes with it.
 * No `error` when no token was sent (RFC 6750 §3.1); `scope` on insufficient_scope;
 * `acr_values` / `max_age` on insufficient_user_authentication (RFC 9470 §3).
 *
 * @example
 * ```ts
 * bearerChallenge(new InsufficientScope(['orders:write']), 'gatehouse');
 * // Bearer realm="gatehouse", error="insufficient_scope", error_description="…", scope="orders:write"
 * ```
 */
export function bearerChallenge(error: GatehouseError, realm: string, dpopAlgs: string | null = null): string | null {
  if (!error.challenge) return null;
  // RFC 9449 §7.1: a request that used the DPoP scheme, or whose DPoP proof or binding was
  // refused, is answered in the DPoP scheme, with the proof algorithms gatehouse accepts.
  const dpop = dpopAlgs !== null || error.dpop;
  let out = `${dpop ? 'DPoP' : 'Bearer'} realm=${quote(realm)}`;
  if (error.oauthError) {
    out += `, error=${quote(error.oauthError)}, error_description=${quote(error.description)}`;
  }
  if (error instanceof InsufficientScope && error.scope) out += `, scope=${quote(error.scope)}`;
  if (error instanceof StepUpRequired) {
    if (error.acrValues) out += `, acr_values=${quote(error.acrValues)}`;
    if (error.maxAge !== undefined) out += `, max_age=${Math.floor(error.maxAge)}`;
  }
  if (dpop && dpopAlgs) out += `, algs=${quote(dpopAlgs)}`;
  return out;
}
