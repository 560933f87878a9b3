import type { Principal } from '../pipeline/context.js';

/**
 * Build the `forwardClaims` mapping of a route (header name → claim name) into a function that
 * appends the headers for the upstream request. Incoming headers of the same names are removed by
 * the forwarder first (src/route/compile.ts strips them), so a client can never spoof them.
 * A claim that is absent, an object, or has characters not allowed in a header value is not sent.
 * Arrays of strings are joined with `,`.
 *
 * @example
 * ```ts
 * const add = compileForwardClaims({ 'X-Auth-Sub': 'sub' });
 * add?.(principal, ctx.upstreamHeaders);
 * ```
 */
export function compileForwardClaims(
  mapping: Readonly<Record<string, string>>,
): ((principal: Principal, out: [string, string][]) => void) | null {
  const pairs = Object.entries(mapping).map(([header, claim]) => [header.toLowerCase(), claim] as const);
  if (pairs.length === 0) return null;
  return function forwardClaims(principal: Principal, out: [string, string][]): void {
    const claims = principal.claims;
    for (let i = 0; i < pairs.length; i++) {
      const [header, claim] = pairs[i]!;
      const value = headerValue(claims[claim]);
      if (value !== undefined) out.push([header, value]);
    }
  };
}

/**
 * A claim as a header value, or undefined when it cannot be one safely.
 *
 * @example
 * ```ts
 * headerValue(['a', 'b']); // 'a,b'
 * headerValue('x\r\ny');   // undefined
 * ```
 */
export function headerValue(value: unknown): string | undefined {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) text = value.join(',');
  else return undefined;
  // field-value: visible ASCII, space and tab only (no CR/LF/NUL, no obs-text).
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 32 && c !== 9) || c > 126) return undefined;
  }
  return text;
}
