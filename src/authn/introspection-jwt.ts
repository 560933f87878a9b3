import type { GatehouseConfig, IntrospectionConfig, IssuerConfig } from '../config/types.js';
import { ServiceUnavailable, type GatehouseError, type Result } from '../errors.js';
import type { GatewayServices, Readiness } from '../pipeline/runtime.js';
import { createJwtVerifier, KEY_LOCATING_HEADERS, normalizeTyp, parseJwt, type JwtVerifier } from './jwt.js';
import { isJwsAlgorithm, verifyJws } from './keys.js';

/**
 * Verifies what an authorization server signs in answer to introspection, with the issuer's
 * own keys (its `jwksUri` or discovery, exactly as for JWT access tokens):
 *
 * - `accept: application/jwt`: the body is the access token in JWT form; it is verified like
 *   any JWT of this issuer (every rule of the JWT issue) and then forwarded as it is.
 * - `accept: application/token-introspection+jwt` (RFC 9701): the body is a JWT with
 *   `typ: token-introspection+jwt`, `iss` = the issuer, `aud` = the gateway's client id, and the
 *   introspection response in its `token_introspection` claim.
 *
 * @example
 * ```ts
 * const signed = createSignedResponseVerifier(issuer, issuer.introspection!, config, services);
 * await signed.start();
 * const result = await signed.verifyIntrospectionResponse(body); // { active: true, sub, scope, ... }
 * ```
 */
export interface SignedResponseVerifier {
  /** The verified claims of a JWT access token the authorization server returned. */
  verifyAccessToken(jwt: string): Promise<Result<Record<string, unknown>>>;
  /** The `token_introspection` member of a verified RFC 9701 response. */
  verifyIntrospectionResponse(jwt: string): Promise<Result<Record<string, unknown>>>;
  start(): Promise<void>;
  close(): Promise<void>;
  readiness(): Readiness;
}

/**
 * Build a {@link SignedResponseVerifier} over a JWT verifier of the issuer (its own key source).
 *
 * @example
 * ```ts
 * const signed = createSignedResponseVerifier(issuer, issuer.introspection!, config, services);
 * const claims = await signed.verifyAccessToken(body); // accept: application/jwt
 * ```
 */
export function createSignedResponseVerifier(
  issuer: IssuerConfig,
  intro: IntrospectionConfig,
  config: GatehouseConfig,
  services: GatewayServices,
): SignedResponseVerifier {
  const verifier: JwtVerifier = createJwtVerifier(issuer, services, { baseDir: config.baseDir });
  const skew = issuer.clockSkew / 1000;

  function invalid(detail: string): GatehouseError {
    return new ServiceUnavailable('GH_ERR_INTROSPECTION_INVALID_RESPONSE', 'the access token cannot be checked right now', { detail, retryAfter: 2 });
  }

  return {
    async verifyAccessToken(jwt) {
      const result = await verifier.verify(jwt);
      if (!result.ok) return result;
      return { ok: true, value: { ...result.value.claims } };
    },
    async verifyIntrospectionResponse(jwt) {
      const parsed = parseJwt(jwt, issuer.maxResponseSize);
      if (!parsed.ok) return { ok: false, error: invalid(`the signed introspection response is malformed: ${parsed.error.detail ?? parsed.error.code}`) };
      const { header, claims } = parsed.value;
      const alg = header.alg;
      if (typeof alg !== 'string' || !isJwsAlgorithm(alg) || !issuer.algorithms.includes(alg)) return { ok: false, error: invalid(`alg ${String(alg)} is not allowed`) };
      if (KEY_LOCATING_HEADERS.some((name) => header[name] !== undefined) || header.crit !== undefined) {
        return { ok: false, error: invalid('the header carries key-locating or critical parameters') };
      }
      // RFC 9701 §5: typ is required, and keeps this JWT from being taken for any other kind.
      if (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== 'token-introspection+jwt') {
        return { ok: false, error: invalid(`typ ${JSON.stringify(header.typ)} is not token-introspection+jwt`) };
      }
      const kid = typeof header.kid === 'string' ? header.kid : undefined;
      let set = verifier.keys.current();
      let found = set?.select(kid, alg);
      if (!found || (!found.ok && found.reason === 'unknown-kid')) {
        await verifier.keys.refreshIfAllowed();
        set = verifier.keys.current();
        found = set?.select(kid, alg);
      }
      if (!set || !found) {
        return { ok: false, error: new ServiceUnavailable('GH_ERR_AUTH_KEYS_UNAVAILABLE', 'the keys to validate access tokens are not available yet', { retryAfter: 5 }) };
      }
      if (!found.ok) return { ok: false, error: invalid(found.detail) };
      const signingInput = Buffer.from(jwt.slice(0, parsed.value.signingInputEnd), 'latin1');
      if (!verifyJws(found.key, alg, signingInput, parsed.value.signature)) return { ok: false, error: invalid('the signature does not verify') };
      if (claims.iss !== issuer.issuer) return { ok: false, error: invalid(`iss ${JSON.stringify(claims.iss)} is not ${issuer.issuer}`) };
      const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
      if (!aud.includes(intro.clientId)) return { ok: false, error: invalid(`aud ${JSON.stringify(claims.aud)} is not the gateway client ${intro.clientId}`) };
      if (typeof claims.iat !== 'number' || claims.iat > services.now() / 1000 + skew) return { ok: false, error: invalid('iat is missing or in the future') };
      if (typeof claims.exp === 'number' && claims.exp <= services.now() / 1000 - skew) return { ok: false, error: invalid('the signed response has expired') };
      const inner = claims.token_introspection;
      if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) return { ok: false, error: invalid('token_introspection is not an object') };
      const value = inner as Record<string, unknown>;
      if (typeof value.active !== 'boolean') return { ok: false, error: invalid('token_introspection has no boolean active') };
      return { ok: true, value: { ...value } };
    },
    start: () => verifier.start(),
    close: () => verifier.close(),
    readiness: () => verifier.readiness(),
  };
}
