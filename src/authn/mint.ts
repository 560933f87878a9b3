import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { GatewayTokenConfig } from '../config/types.js';
import type { GatewayKeys } from './gateway-keys.js';

/**
 * Members of an introspection response that are NOT carried into the minted JWT: the ones
 * gatehouse sets itself (`iss`, `aud`, `iat`, `exp`, `jti`, `sub`), introspection metadata
 * (`active`, `token_type`), and `cnf` (the binding was checked here; the upstream cannot see the
 * client's certificate). Everything else (`scope`, `client_id`, `auth_time`, `acr`, `amr`,
 * custom claims such as a tenant) is carried, as RFC 9068 §2.2 describes the by-value token.
 */
const NOT_CARRIED = new Set(['iss', 'aud', 'iat', 'exp', 'nbf', 'jti', 'sub', 'active', 'token_type', 'cnf']);

/**
 * A JWT gatehouse minted, its `exp` in seconds and the `kid` that signed it.
 *
 * @example
 * ```ts
 * const { jwt, exp, kid }: MintedToken = await minter.mint(claims, audience, Date.now());
 * ```
 */
export interface MintedToken {
  readonly jwt: string;
  readonly exp: number;
  /** The signing key: a gateway that does not publish it (another instance's key) mints its own. */
  readonly kid: string;
}

/**
 * Mints the short-lived JWTs that replace opaque tokens on the way to the upstream (the phantom
 * token pattern). RFC 9068 shaped: header `typ: at+jwt` with the signing key's `kid`; claims
 * `iss` (= `gateway.issuer`), `aud`, `sub`, `scope`, `client_id`, `iat`, `exp`, `jti`, and the
 * other claims of the introspection answer (see NOT_CARRIED for what is left out).
 *
 * @example
 * ```ts
 * const minter = createMinter(keys, config.gateway);
 * const { jwt } = await minter.mint({ sub: 'alice', scope: 'orders:read', exp: 1767225600 }, 'https://api.example.com', Date.now());
 * ```
 */
export interface Minter {
  /**
   * Sign a JWT for `audience` from checked introspection claims. `exp` is the earlier of the
   * opaque token's `exp` and now + `gateway.tokenTtl`, so the JWT never outlives the token.
   */
  mint(claims: Readonly<Record<string, unknown>>, audience: string, now: number): Promise<MintedToken>;
}

/**
 * Build a {@link Minter} over the shared gateway keys; `keys.ready()` must have resolved before
 * the first `mint` (the authenticator awaits it on start).
 *
 * @example
 * ```ts
 * const keys = acquireGatewayKeys(config);
 * await keys.ready();
 * const minter = createMinter(keys, config.gateway);
 * ```
 */
export function createMinter(keys: GatewayKeys, gateway: GatewayTokenConfig): Minter {
  const ttl = Math.max(1, Math.floor(gateway.tokenTtl / 1000));
  return {
    async mint(claims, audience, now) {
      if (!keys.loaded) await keys.ready();
      const key = keys.signingKey();
      const iat = Math.floor(now / 1000);
      const tokenExp = typeof claims.exp === 'number' ? Math.floor(claims.exp) : Infinity;
      const exp = Math.min(iat + ttl, tokenExp);
      const payload: Record<string, unknown> = {};
      for (const name in claims) if (!NOT_CARRIED.has(name) && claims[name] !== undefined) payload[name] = claims[name];
      // RFC 9068 §2.2: sub is required; for a client acting on its own behalf it is the client_id.
      const sub = typeof claims.sub === 'string' ? claims.sub : typeof claims.client_id === 'string' ? claims.client_id : undefined;
      // Without sub or client_id there is no subject to state; none is invented.
      if (sub !== undefined) payload.sub = sub;
      const jwt = await new SignJWT(payload)
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
        .setIssuer(gateway.issuer)
        .setAudience(audience)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .setJti(randomBytes(16).toString('base64url'))
        .sign(key.privateKey);
      return { jwt, exp, kid: key.kid };
    },
  };
}
