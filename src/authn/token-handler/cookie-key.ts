/**
 * The text form of a token-handler cookie key. Its own module, free of jose: the config loader
 * checks `tokenHandler.cookieKeys` with it in every gateway, and the token handler's code (and
 * jose with it) loads only for a config that has one (src/areas.ts).
 */

const KEY_TEXT = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * Decode one entry of `tokenHandler.cookieKeys`: base64 (or base64url) of exactly 32 bytes.
 * Returns the problem as a string when the key is unusable (a config issue, never a runtime error).
 *
 * @example
 * ```ts
 * const key = decodeCookieKey(randomBytes(32).toString('base64'));
 * if (typeof key === 'string') throw new Error(key);
 * ```
 */
export function decodeCookieKey(text: string): Uint8Array | string {
  const trimmed = text.trim();
  if (!KEY_TEXT.test(trimmed)) return 'is not base64 text (expected the base64 of 32 random bytes, e.g. `openssl rand -base64 32`)';
  const bytes = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length !== 32) return `decodes to ${bytes.length} bytes; AES-256-GCM needs exactly 32 (e.g. \`openssl rand -base64 32\`)`;
  return new Uint8Array(bytes);
}
