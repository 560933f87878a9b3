import { hash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { InvalidToken, type GatehouseError, type GatehouseErrorCode } from '../errors.js';
import type { RequestContext } from '../pipeline/context.js';
import type { DpopChecker } from './dpop.js';

/**
 * Sender-constrained access tokens: the `cnf` (confirmation) claim of RFC 7800 §3.1, as carried
 * by a JWT access token (RFC 9068) or an introspection answer (RFC 7662 §2.2). One implementation
 * for both paths (src/authn/jwt.ts and src/authn/introspection.ts); only the codes differ.
 *
 * gatehouse checks two confirmation methods: `x5t#S256`, the SHA-256 thumbprint of the client
 * certificate the token is bound to (RFC 8705 §3.1), against the verified certificate of the
 * connection; and `jkt`, the thumbprint of a DPoP key (RFC 9449 §6), against the request's DPoP
 * proof (src/authn/dpop.ts). Any other member (`jwk`, `kid`, `jku`, …) needs a proof gatehouse
 * does not verify, so such a token is refused: accepting it would make a stolen
 * sender-constrained token a bearer token again.
 */

/**
 * The codes one path answers with.
 *
 * @example
 * ```ts
 * const codes: BindingCodes = { malformed: 'GH_ERR_JWT_CLAIM_INVALID', constrained: 'GH_ERR_JWT_SENDER_CONSTRAINED' };
 * ```
 */
export interface BindingCodes {
  /** `cnf` is not a JSON object, or its `x5t#S256` is not a SHA-256 thumbprint. */
  readonly malformed: GatehouseErrorCode;
  /** Bound to something gatehouse cannot check, or to another certificate than the connection's. */
  readonly constrained: GatehouseErrorCode;
}

/** The member of RFC 8705 §3.1. */
const X5T_S256 = 'x5t#S256';
/** The member of RFC 9449 §6.1. */
const JKT = 'jkt';
/** base64url (no padding) of 32 bytes. */
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/** A `cnf` with `jkt` (RFC 9449 §6.1): bit of {@link bindingsOf}. */
export const DPOP_BOUND = 1;
/** A `cnf` with `x5t#S256` (RFC 8705 §3.1): bit of {@link bindingsOf}. */
export const CERTIFICATE_BOUND = 2;

/**
 * Which confirmation methods a `cnf` names, as bits (one place that knows the members' names;
 * no allocation): for the principal's upstream scheme (src/authn/jwt.ts) and `senderConstrained`
 * (src/authz/sender.ts).
 *
 * @example
 * ```ts
 * (bindingsOf({ jkt: '…' }) & DPOP_BOUND) !== 0; // true
 * ```
 */
export function bindingsOf(cnf: unknown): number {
  if (typeof cnf !== 'object' || cnf === null) return 0;
  const members = cnf as Record<string, unknown>;
  return (members[JKT] !== undefined ? DPOP_BOUND : 0) | (members[X5T_S256] !== undefined ? CERTIFICATE_BOUND : 0);
}

/**
 * The shape rules of `cnf`, checked once when the token is verified (before it is cached):
 * absent, or a JSON object whose members, if any, are `x5t#S256` and `jkt`, each holding a
 * base64url SHA-256 thumbprint. Returns the denial, or null.
 *
 * @example
 * ```ts
 * checkConfirmation({ jwk: { kty: 'EC' } }, codes)?.code; // codes.constrained: a binding gatehouse cannot check
 * checkConfirmation('abc', codes)?.code; // codes.malformed
 * ```
 */
export function checkConfirmation(cnf: unknown, codes: BindingCodes): InvalidToken | null {
  if (cnf === undefined) return null;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) {
    return new InvalidToken(codes.malformed, 'the access token has an invalid claim', { detail: `cnf must be a JSON object, got ${typeName(cnf)}` });
  }
  for (const name in cnf) {
    if (name !== X5T_S256 && name !== JKT) {
      return new InvalidToken(codes.constrained, 'the access token is bound to a key gatehouse cannot check', {
        detail: `cnf ${name} cannot be checked by gatehouse (only x5t#S256, RFC 8705, and jkt, RFC 9449); a sender-constrained token is never accepted as a bearer token`,
      });
    }
  }
  const x5t = (cnf as Record<string, unknown>)[X5T_S256];
  if (x5t !== undefined && (typeof x5t !== 'string' || !THUMBPRINT.test(x5t))) {
    return new InvalidToken(codes.malformed, 'the access token has an invalid claim', { detail: 'cnf x5t#S256 must be the base64url SHA-256 thumbprint of a certificate' });
  }
  const jkt = (cnf as Record<string, unknown>)[JKT];
  if (jkt !== undefined && (typeof jkt !== 'string' || !THUMBPRINT.test(jkt))) {
    return new InvalidToken(codes.malformed, 'the access token has an invalid claim', { detail: 'cnf jkt must be the base64url SHA-256 thumbprint of a JWK (RFC 7638)' });
  }
  return null;
}

/**
 * On every request (cache hits included), for a token whose `cnf` is present or that came in
 * the `DPoP` scheme: the shape rules again (cheap; a refusal never depends on the cache having
 * checked them); an `x5t#S256` must equal the thumbprint of the connection's verified client
 * certificate; a `jkt` needs the `DPoP` scheme and a valid proof by that key for this request
 * (RFC 9449 §7.1, §7.2); the `DPoP` scheme needs a `jkt`. Callers skip the call when `cnf` is
 * undefined and the scheme is not DPoP, so an unbound bearer token costs two property reads.
 * Returns the denial, or null; a promise of either only for a DPoP proof whose replay check
 * goes to Redis.
 *
 * The thumbprints are compared as text: both are canonical base64url of 32 bytes when they name
 * the same certificate or key (a non-canonical spelling never matches, so it is refused). Neither
 * is a secret, so the comparison need not be constant-time.
 *
 * @example
 * ```ts
 * const denial = claims.cnf === undefined && ctx.tokenScheme !== 'DPoP' ? null : checkSender(claims.cnf, ctx, token, codes, dpop);
 * ```
 */
export function checkSender(cnf: unknown, ctx: RequestContext, token: string, codes: BindingCodes, dpop: DpopChecker): GatehouseError | null | Promise<GatehouseError | null> {
  const shape = checkConfirmation(cnf, codes);
  if (shape !== null) return shape;
  const bound = cnf as Record<string, unknown> | undefined;
  const expected = bound?.[X5T_S256];
  if (expected !== undefined) {
    const certificate = ctx.clientCertificate;
    const actual = certificate ? certificateThumbprint(certificate) : null;
    if (actual !== expected) {
      return new InvalidToken(codes.constrained, 'the access token is bound to another client certificate', {
        detail: actual === null ? 'a certificate-bound token (cnf x5t#S256) came without a client certificate' : 'cnf x5t#S256 does not match the client certificate of this connection',
      });
    }
  }
  const jkt = bound?.[JKT];
  if (ctx.tokenScheme === 'DPoP') {
    if (jkt === undefined) {
      return new InvalidToken('GH_ERR_DPOP_SCHEME_MISMATCH', 'the access token is not bound to a DPoP key', {
        detail: 'the DPoP scheme was used with a token that has no cnf.jkt (send it as a Bearer token)',
        dpop: true,
      });
    }
    return dpop.check(ctx, token, jkt as string);
  }
  if (jkt !== undefined) {
    return new InvalidToken('GH_ERR_DPOP_SCHEME_MISMATCH', 'a DPoP-bound access token must be sent with the DPoP scheme and a proof', {
      detail: ctx.tokenSource === 'cookie' ? 'a DPoP-bound token (cnf.jkt) in a token-handler session: no proof can come with it' : 'a DPoP-bound token (cnf.jkt) was sent as a Bearer token (RFC 9449 §7.2)',
      dpop: true,
    });
  }
  return null;
}

/**
 * Thumbprints by certificate object. The runner parses the peer certificate once per TLS
 * connection and hands every request of it the same object (src/pipeline/run.ts), so the
 * digest is computed once per connection; the entry goes with the connection's certificate.
 */
const thumbprints = new WeakMap<PeerCertificate, string | null>();

/**
 * base64url SHA-256 of the certificate's DER (RFC 8705 §3.1 `x5t#S256`), or null when the
 * object holds no certificate (`raw` missing or empty). Computed once per certificate object.
 *
 * @example
 * ```ts
 * certificateThumbprint(ctx.clientCertificate!); // 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0'
 * ```
 */
export function certificateThumbprint(certificate: PeerCertificate): string | null {
  let thumbprint = thumbprints.get(certificate);
  if (thumbprint === undefined) {
    const raw = certificate.raw as Buffer | undefined;
    thumbprint = Buffer.isBuffer(raw) && raw.length > 0 ? hash('sha256', raw, 'base64url') : null;
    thumbprints.set(certificate, thumbprint);
  }
  return thumbprint;
}

function typeName(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}
