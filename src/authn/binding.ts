import { hash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { InvalidToken, type GatehouseErrorCode } from '../errors.js';

/**
 * Sender-constrained access tokens: the `cnf` (confirmation) claim of RFC 7800 §3.1, as carried
 * by a JWT access token (RFC 9068) or an introspection answer (RFC 7662 §2.2). One implementation
 * for both paths (src/authn/jwt.ts and src/authn/introspection.ts); only the codes differ.
 *
 * gatehouse can check one confirmation method: `x5t#S256`, the SHA-256 thumbprint of the client
 * certificate the token is bound to (RFC 8705 §3.1), against the verified certificate of the
 * connection. Any other member (`jkt` of DPoP, RFC 9449 §6; `jwk`, `kid`, `jku`, …) needs a proof
 * gatehouse does not verify, so such a token is refused: accepting it would make a stolen
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
/** base64url (no padding) of 32 bytes. */
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/**
 * The shape rules of `cnf`, checked once when the token is verified (before it is cached):
 * absent, or a JSON object whose only member, if any, is `x5t#S256` holding a base64url SHA-256
 * thumbprint. Returns the denial, or null.
 *
 * @example
 * ```ts
 * checkConfirmation({ jkt: '0ZcOCORZNYy…' }, codes)?.code; // codes.constrained: a DPoP key gatehouse cannot check
 * checkConfirmation('abc', codes)?.code; // codes.malformed
 * ```
 */
export function checkConfirmation(cnf: unknown, codes: BindingCodes): InvalidToken | null {
  if (cnf === undefined) return null;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) {
    return new InvalidToken(codes.malformed, 'the access token has an invalid claim', { detail: `cnf must be a JSON object, got ${typeName(cnf)}` });
  }
  for (const name in cnf) {
    if (name !== X5T_S256) {
      return new InvalidToken(codes.constrained, 'the access token is bound to a key gatehouse cannot check', {
        detail: `cnf ${name} cannot be checked by gatehouse (only x5t#S256, RFC 8705); a sender-constrained token is never accepted as a bearer token`,
      });
    }
  }
  const x5t = (cnf as Record<string, unknown>)[X5T_S256];
  if (x5t !== undefined && (typeof x5t !== 'string' || !THUMBPRINT.test(x5t))) {
    return new InvalidToken(codes.malformed, 'the access token has an invalid claim', { detail: 'cnf x5t#S256 must be the base64url SHA-256 thumbprint of a certificate' });
  }
  return null;
}

/**
 * On every request (cache hits included), for a token whose `cnf` is present: the shape rules
 * again (cheap; a refusal never depends on the cache having checked them), then an `x5t#S256`
 * must equal the thumbprint of the connection's verified client certificate. Callers skip the
 * call when `cnf` is undefined, so an unbound token costs one property read. Returns the denial,
 * or null.
 *
 * The thumbprints are compared as text: both are canonical base64url of 32 bytes when they name
 * the same certificate (a non-canonical spelling never matches, so it is refused). Neither is a
 * secret (the token carries one, the certificate the other), so the comparison need not be
 * constant-time.
 *
 * @example
 * ```ts
 * const denial = claims.cnf === undefined ? null : checkSender(claims.cnf, ctx.clientCertificate, codes);
 * ```
 */
export function checkSender(cnf: unknown, certificate: PeerCertificate | null | undefined, codes: BindingCodes): InvalidToken | null {
  const shape = checkConfirmation(cnf, codes);
  if (shape !== null) return shape;
  const expected = (cnf as Record<string, unknown>)[X5T_S256];
  if (expected === undefined) return null;
  const actual = certificate ? certificateThumbprint(certificate) : null;
  if (actual === expected) return null;
  return new InvalidToken(codes.constrained, 'the access token is bound to another client certificate', {
    detail: actual === null ? 'a certificate-bound token (cnf x5t#S256) came without a client certificate' : 'cnf x5t#S256 does not match the client certificate of this connection',
  });
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
