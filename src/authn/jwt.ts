import { isAscii } from 'node:buffer';
import type { IssuerConfig } from '../config/types.js';
import { GatehouseError, InvalidToken, ServiceUnavailable, type Result } from '../errors.js';
import type { Principal } from '../pipeline/context.js';
import { bearerAuthorization } from './bearer.js';
import { bindingsOf, checkConfirmation, DPOP_BOUND, type BindingCodes } from './binding.js';
import type { GatewayServices, Readiness } from '../pipeline/runtime.js';
import { createFetcher, type JsonFetcher } from './fetch.js';
import { createJwksSource, type JwksSource } from './jwks.js';
import { base64UrlValue, hasCanonicalTail, isJwsAlgorithm, verifyJws, type KeySet, type VerificationKey } from './keys.js';
import type { CachedToken, TokenCache } from './token-cache.js';

/**
 * JWT access-token validation (RFC 7519, RFC 8725, RFC 9068), written as policy over
 * `node:crypto`: the token is parsed here with strict checks before any cryptography, the
 * issuer is chosen by `iss` before any key is used, keys come only from the issuer's key set,
 * and every claim rule of the JWT issue is checked. docs/tokens.md lists each rule and its code.
 */

/** A compact JWS split, its header decoded; the payload left as bytes (any content). */
export interface ParsedJws {
  readonly token: string;
  readonly header: Readonly<Record<string, unknown>>;
  /** Index of the first `.`: the payload is `token.slice(payloadStart, signingInputEnd)`. */
  readonly payloadStart: number;
  /** Index of the second `.`: the signing input is `token.slice(0, signingInputEnd)`. */
  readonly signingInputEnd: number;
  readonly signature: Buffer;
}

/**
 * A compact JWT split and decoded, not yet verified: a {@link ParsedJws} whose payload is a JSON object.
 *
 * @example
 * ```ts
 * const parsed = parseJwt(token, 8192);
 * if (parsed.ok) parsed.value.header.kid;
 * ```
 */
export interface ParsedJwt extends ParsedJws {
  readonly claims: Readonly<Record<string, unknown>>;
}

/**
 * A token whose signature and claims are valid for one issuer (`header` is empty on a cache hit).
 *
 * @example
 * ```ts
 * const result = await verifier.verify(token);
 * if (result.ok) ctx.principal = result.value.principal;
 * ```
 */
export interface VerifiedJwt {
  readonly issuer: IssuerConfig;
  readonly header: Readonly<Record<string, unknown>>;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly principal: Principal;
  readonly key: VerificationKey;
  /** The cache entry (also built when no cache is used). */
  readonly entry: CachedToken;
}

/** Absolute ceiling for any token, whatever an issuer allows; also used before the issuer is known. */
export const MAX_TOKEN_SIZE_CEILING = 64 * 1024;

/** Header parameters that name or carry a key: never used to find keys, and a token carrying one is refused. */
export const KEY_LOCATING_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const;

/** `typ` values of other kinds of JWT (RFC 8725 §3.11): such a token is never an access token. */
const FOREIGN_TYPES = new Set([
  'dpop+jwt',
  'logout+jwt',
  'secevent+jwt',
  'token-introspection+jwt',
  'id_token+jwt',
  'oauth-authz-req+jwt',
  'jwt-bearer+jwt',
  'client-authentication+jwt',
  'kb+jwt',
  'vc+jwt',
  'vp+jwt',
  'entity-statement+jwt',
  'trust-mark+jwt',
  'txn+jwt',
  'wimse-id+jwt',
]);

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Three base64url parts, the first and last non-empty: the shape every JWS must have (one native regex test). */
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/;

function malformed(detail: string): InvalidToken {
  return new InvalidToken('GH_ERR_JWT_MALFORMED', 'the access token is malformed', { detail });
}

function decodeJsonSegment(token: string, start: number, end: number, what: string): Record<string, unknown> | InvalidToken {
  if (start === end) return malformed(`the ${what} is empty`);
  if (!hasCanonicalTail(token, start, end)) return malformed(`the ${what} is not canonical base64url`);
  const bytes = Buffer.from(token.slice(start, end), 'base64url');
  let text: string;
  if (isAscii(bytes)) text = bytes.toString('latin1'); // the usual case: one native check, no decoder
  else {
    try {
      text = utf8.decode(bytes);
    } catch {
      return malformed(`the ${what} is not UTF-8`);
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return malformed(`the ${what} is not JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return malformed(`the ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Decoded JWS headers by their base64url segment. Every token signed with one key of one issuer
 * carries the same header, so a miss of the verified-token cache (a new token, or no cache)
 * decodes it once instead of per token: a map lookup (≈ 0.1 µs) for a base64url decode, a UTF-8
 * check and a `JSON.parse` (≈ 1 µs; issue 8). The decoded value is a pure function of the
 * segment; only headers that decoded are kept, frozen, since every token with that segment
 * shares the object. Bounded: cleared whole when full, so a client that sends a new header on
 * every request costs what it cost before and a map of at most {@link HEADER_CACHE_SIZE}.
 */
const HEADER_CACHE_SIZE = 256;
const headerCache = new Map<string, Readonly<Record<string, unknown>>>();

/**
 * How many decoded headers are kept (tests: the cache stays bounded).
 *
 * @internal
 * @example
 * ```ts
 * decodedHeaderCount(); // ≤ 256
 * ```
 */
export function decodedHeaderCount(): number {
  return headerCache.size;
}

function decodeHeader(token: string, end: number): Readonly<Record<string, unknown>> | InvalidToken {
  const segment = token.slice(0, end);
  const known = headerCache.get(segment);
  if (known !== undefined) return known;
  const header = decodeJsonSegment(token, 0, end, 'header');
  if (header instanceof InvalidToken) return header;
  if (headerCache.size >= HEADER_CACHE_SIZE) headerCache.clear();
  // The key is a copy of the segment alone: a slice would keep the whole token (a credential,
  // up to 64 KiB) alive for as long as its header stays in the map.
  headerCache.set(Buffer.from(segment, 'latin1').toString('latin1'), Object.freeze(header));
  return header;
}

/**
 * Split a compact JWS with strict checks and no cryptography: at most `maxSize` characters,
 * exactly three parts (the payload may be empty), canonical base64url, a UTF-8 JSON object header,
 * a non-empty signature.
 *
 * @example
 * ```ts
 * const jws = parseJws(token, 8192);
 * ```
 */
export function parseJws(token: string, maxSize: number): Result<ParsedJws> {
  if (token.length > maxSize) {
    return { ok: false, error: new InvalidToken('GH_ERR_JWT_TOO_LARGE', 'the access token is too large', { detail: `${token.length} bytes, limit ${maxSize}` }) };
  }
  let first: number;
  let second: number;
  if (JWS_SHAPE.test(token)) {
    first = token.indexOf('.');
    second = token.indexOf('.', first + 1);
  } else {
    // Not the shape of a JWS: walk it to say precisely why.
    first = -1;
    second = -1;
    for (let i = 0; i < token.length; i++) {
      const c = token.charCodeAt(i);
      if (c === 46) {
        if (first === -1) first = i;
        else if (second === -1) second = i;
        else return { ok: false, error: malformed('more than three parts') };
      } else if (base64UrlValue(c) === -1) {
        return { ok: false, error: malformed('a character outside base64url') };
      }
    }
    if (second === -1) return { ok: false, error: malformed('fewer than three parts') };
  }
  const header = decodeHeader(token, first);
  if (header instanceof InvalidToken) return { ok: false, error: header };
  if (!hasCanonicalTail(token, first + 1, second)) return { ok: false, error: malformed('the payload is not canonical base64url') };
  if (second + 1 === token.length) return { ok: false, error: malformed('the signature is empty') };
  if (!hasCanonicalTail(token, second + 1, token.length)) return { ok: false, error: malformed('the signature is not canonical base64url') };
  const signature = Buffer.from(token.slice(second + 1), 'base64url');
  return { ok: true, value: { token, header, payloadStart: first + 1, signingInputEnd: second, signature } };
}

/**
 * Split and decode a JWT: {@link parseJws}, and the payload must be a UTF-8 JSON object (the claims).
 * Whatever it accepts is an RFC 6750 b64token: it takes base64url characters and '.' only.
 *
 * @example
 * ```ts
 * const parsed = parseJwt(token, 8192);
 * if (parsed.ok) console.log(parsed.value.claims.iss);
 * ```
 */
export function parseJwt(token: string, maxSize: number): Result<ParsedJwt> {
  const jws = parseJws(token, maxSize);
  if (!jws.ok) return jws;
  const { header, payloadStart, signingInputEnd, signature } = jws.value;
  const claims = decodeJsonSegment(token, payloadStart, signingInputEnd, 'payload');
  if (claims instanceof InvalidToken) return { ok: false, error: claims };
  return { ok: true, value: { token, header, claims, payloadStart, signingInputEnd, signature } };
}

/**
 * `application/at+jwt` → `at+jwt` (RFC 7515 §4.1.9: the prefix may be omitted; compare case-insensitively).
 *
 * @example
 * ```ts
 * normalizeTyp('application/AT+JWT'); // 'at+jwt'
 * ```
 */
export function normalizeTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice(12) : lower;
}

/**
 * Header rules, before any key is looked up: `alg` asymmetric and in the issuer's allowlist;
 * no key-locating parameters; no `crit`; a `typ` that is an access token's (or `requireTyp`).
 * Unknown other parameters are ignored, as RFC 7515 §4 says.
 *
 * @example
 * ```ts
 * const denial = checkHeader(parsed.header, issuer);
 * ```
 */
export function checkHeader(header: Readonly<Record<string, unknown>>, issuer: IssuerConfig): InvalidToken | null {
  const alg = header.alg;
  if (typeof alg !== 'string') return malformed('the header has no alg');
  if (!isJwsAlgorithm(alg)) {
    return new InvalidToken('GH_ERR_JWT_ALG_NOT_ALLOWED', 'the access token is signed with an algorithm that is not allowed', {
      detail: `alg ${alg} is not an asymmetric algorithm (none and HS* are never accepted)`,
    });
  }
  if (!issuer.algorithms.includes(alg)) {
    return new InvalidToken('GH_ERR_JWT_ALG_NOT_ALLOWED', 'the access token is signed with an algorithm that is not allowed', {
      detail: `alg ${alg} is not in the algorithms of issuer ${issuer.name} (${issuer.algorithms.join(', ')})`,
    });
  }
  for (let i = 0; i < KEY_LOCATING_HEADERS.length; i++) {
    const name = KEY_LOCATING_HEADERS[i]!;
    if (header[name] !== undefined) {
      return new InvalidToken('GH_ERR_JWT_HEADER_NOT_ALLOWED', 'the access token header carries a parameter that is not accepted', {
        detail: `header parameter ${name} is refused: keys come only from the issuer's key set`,
      });
    }
  }
  if (header.crit !== undefined) {
    return new InvalidToken('GH_ERR_JWT_CRIT_UNSUPPORTED', 'the access token header has critical parameters gatehouse does not support', {
      detail: `crit ${JSON.stringify(header.crit)}: gatehouse implements no JWS extension`,
    });
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') return malformed('kid is not a string');
  const typ = header.typ;
  if (typ !== undefined && typeof typ !== 'string') return malformed('typ is not a string');
  if (issuer.requireTyp !== undefined) {
    if (typ === undefined || normalizeTyp(typ) !== normalizeTyp(issuer.requireTyp)) {
      return new InvalidToken('GH_ERR_JWT_TYP_INVALID', 'the access token has the wrong type', {
        detail: `typ ${typ === undefined ? 'is missing' : JSON.stringify(typ)}; issuer ${issuer.name} requires ${issuer.requireTyp}`,
      });
    }
  } else if (typ !== undefined) {
    const t = normalizeTyp(typ);
    if (FOREIGN_TYPES.has(t) || (t.endsWith('+jwt') && t !== 'at+jwt')) {
      return new InvalidToken('GH_ERR_JWT_TYP_INVALID', 'the access token has the wrong type', {
        detail: `typ ${JSON.stringify(typ)} names another kind of token (RFC 8725 §3.11)`,
      });
    }
  }
  return null;
}

/**
 * The codes of the JWT path for `cnf` (src/authn/binding.ts): a `cnf` of the wrong shape is an
 * invalid claim; a binding gatehouse cannot check, or to another certificate, is refused.
 *
 * @example
 * ```ts
 * const denial = checkSender(claims.cnf, ctx.clientCertificate, JWT_BINDING_CODES);
 * ```
 */
export const JWT_BINDING_CODES: BindingCodes = Object.freeze({ malformed: 'GH_ERR_JWT_CLAIM_INVALID', constrained: 'GH_ERR_JWT_SENDER_CONSTRAINED' });

/** One claim rule; `run` returns the denial or null. `token inspect` runs them all and reports each. */
export interface ClaimCheck {
  readonly name: string;
  run(claims: Readonly<Record<string, unknown>>, issuer: IssuerConfig, now: number): InvalidToken | null;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function wrongType(claim: string, expected: string, value: unknown): InvalidToken {
  return new InvalidToken('GH_ERR_JWT_CLAIM_INVALID', 'the access token has an invalid claim', {
    detail: `${claim} must be ${expected}, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
  });
}

/**
 * Every claim rule, in the order they run.
 *
 * @example
 * ```ts
 * for (const check of CLAIM_CHECKS) console.log(check.name, check.run(claims, issuer, Date.now())?.code ?? 'ok');
 * ```
 */
export const CLAIM_CHECKS: readonly ClaimCheck[] = [
  {
    name: 'iss',
    run(claims, issuer) {
      if (claims.iss === issuer.issuer) return null;
      return new InvalidToken('GH_ERR_JWT_ISSUER_UNKNOWN', 'the access token is from an unknown issuer', {
        detail: `iss ${JSON.stringify(claims.iss)} is not ${JSON.stringify(issuer.issuer)}`,
      });
    },
  },
  {
    name: 'exp',
    run(claims, issuer, now) {
      const exp = claims.exp;
      if (exp === undefined) return new InvalidToken('GH_ERR_JWT_CLAIM_MISSING', 'the access token lacks a required claim', { detail: 'exp is required' });
      if (!isNumericDate(exp)) return wrongType('exp', 'a number (NumericDate)', exp);
      if (now >= exp * 1000 + issuer.clockSkew) {
        return new InvalidToken('GH_ERR_JWT_EXPIRED', 'the access token has expired', {
          detail: `exp ${exp} is ${Math.round((now - exp * 1000) / 1000)}s ago (clock skew ${issuer.clockSkew / 1000}s)`,
        });
      }
      return null;
    },
  },
  {
    name: 'nbf',
    run(claims, issuer, now) {
      const nbf = claims.nbf;
      if (nbf === undefined) return null;
      if (!isNumericDate(nbf)) return wrongType('nbf', 'a number (NumericDate)', nbf);
      if (nbf * 1000 > now + issuer.clockSkew) {
        return new InvalidToken('GH_ERR_JWT_NOT_YET_VALID', 'the access token is not valid yet', {
          detail: `nbf ${nbf} is ${Math.round((nbf * 1000 - now) / 1000)}s in the future (clock skew ${issuer.clockSkew / 1000}s)`,
        });
      }
      return null;
    },
  },
  {
    name: 'iat',
    run(claims, issuer, now) {
      const iat = claims.iat;
      if (iat === undefined) {
        if (issuer.maxTokenAge === undefined) return null;
        return new InvalidToken('GH_ERR_JWT_CLAIM_MISSING', 'the access token lacks a required claim', { detail: 'iat is required (maxTokenAge is set)' });
      }
      if (!isNumericDate(iat)) return wrongType('iat', 'a number (NumericDate)', iat);
      if (iat * 1000 > now + issuer.clockSkew) {
        return new InvalidToken('GH_ERR_JWT_ISSUED_IN_FUTURE', 'the access token is issued in the future', {
          detail: `iat ${iat} is ${Math.round((iat * 1000 - now) / 1000)}s in the future (clock skew ${issuer.clockSkew / 1000}s)`,
        });
      }
      if (issuer.maxTokenAge !== undefined && now - iat * 1000 > issuer.maxTokenAge + issuer.clockSkew) {
        return new InvalidToken('GH_ERR_JWT_TOO_OLD', 'the access token is too old', {
          detail: `iat ${iat} is ${Math.round((now - iat * 1000) / 1000)}s ago; maxTokenAge is ${issuer.maxTokenAge / 1000}s`,
        });
      }
      return null;
    },
  },
  {
    name: 'aud',
    run(claims, issuer) {
      const aud = claims.aud;
      const audiences = issuer.audiences;
      if (typeof aud === 'string') {
        if (audiences.includes(aud)) return null;
      } else if (Array.isArray(aud)) {
        for (let i = 0; i < aud.length; i++) if (typeof aud[i] !== 'string') return wrongType('aud', 'a string or an array of strings', aud[i]);
        for (let i = 0; i < aud.length; i++) if (audiences.includes(aud[i] as string)) return null;
      } else if (aud !== undefined) {
        return wrongType('aud', 'a string or an array of strings', aud);
      }
      return new InvalidToken('GH_ERR_JWT_AUDIENCE_INVALID', 'the access token is not meant for this API', {
        detail: `aud ${aud === undefined ? 'is missing' : JSON.stringify(aud)}; expected one of ${JSON.stringify(audiences)}`,
      });
    },
  },
  {
    name: 'types',
    run(claims) {
      if (claims.sub !== undefined && typeof claims.sub !== 'string') return wrongType('sub', 'a string', claims.sub);
      if (claims.scope !== undefined && typeof claims.scope !== 'string') return wrongType('scope', 'a space-separated string', claims.scope);
      const scp = claims.scp;
      if (scp !== undefined && typeof scp !== 'string') {
        if (!Array.isArray(scp)) return wrongType('scp', 'an array of strings', scp);
        for (let i = 0; i < scp.length; i++) if (typeof scp[i] !== 'string') return wrongType('scp', 'an array of strings', scp[i]);
      }
      if (claims.client_id !== undefined && typeof claims.client_id !== 'string') return wrongType('client_id', 'a string', claims.client_id);
      return null;
    },
  },
  {
    // RFC 8705 / RFC 9449: a sender-constrained token is only good from its sender. The shape
    // is checked here; the certificate of the connection on every request (checkSender).
    name: 'cnf',
    run(claims) {
      return checkConfirmation(claims.cnf, JWT_BINDING_CODES);
    },
  },
  {
    name: 'requiredClaims',
    run(claims, issuer) {
      const required = issuer.requiredClaims;
      for (let i = 0; i < required.length; i++) {
        const value = claims[required[i]!];
        if (value === undefined || value === null) {
          return new InvalidToken('GH_ERR_JWT_CLAIM_MISSING', 'the access token lacks a required claim', { detail: `${required[i]} is required` });
        }
      }
      return null;
    },
  },
];

/**
 * Run every claim rule; the first denial wins. `now` is ms since the epoch.
 *
 * @example
 * ```ts
 * const denial = checkClaims(parsed.claims, issuer, Date.now());
 * ```
 */
export function checkClaims(claims: Readonly<Record<string, unknown>>, issuer: IssuerConfig, now: number): InvalidToken | null {
  for (let i = 0; i < CLAIM_CHECKS.length; i++) {
    const denial = CLAIM_CHECKS[i]!.run(claims, issuer, now);
    if (denial) return denial;
  }
  return null;
}

const EMPTY_SCOPES: ReadonlySet<string> = new Set();

/**
 * The scopes of a token: `scope` (space-separated, RFC 9068 §2.2.3) and `scp` (an array, or a string).
 *
 * @example
 * ```ts
 * scopesOf({ scope: 'orders:read orders:write' }); // Set { 'orders:read', 'orders:write' }
 * ```
 */
export function scopesOf(claims: Readonly<Record<string, unknown>>): ReadonlySet<string> {
  const scope = claims.scope;
  const scp = claims.scp;
  if (scope === undefined && scp === undefined) return EMPTY_SCOPES;
  const out = new Set<string>();
  if (typeof scope === 'string') addWords(out, scope);
  if (typeof scp === 'string') {
    addWords(out, scp);
  } else if (Array.isArray(scp)) {
    for (const s of scp) if (typeof s === 'string' && s) out.add(s);
  }
  return out;
}

/**
 * Adds the space-separated words of `list` to `out` (empty words, from a leading, trailing or
 * doubled space, are skipped). Every token verified without the cache builds its scopes: an
 * `indexOf` walk costs a quarter of `split(' ')` and its array (≈ 0.1 against 0.4 µs, issue 8).
 */
function addWords(out: Set<string>, list: string): void {
  let from = 0;
  for (;;) {
    const space = list.indexOf(' ', from);
    const end = space === -1 ? list.length : space;
    if (end > from) out.add(list.slice(from, end));
    if (space === -1) return;
    from = space + 1;
  }
}

/**
 * A principal for verified JWT claims (frozen: it is shared by every cache hit).
 *
 * @example
 * ```ts
 * const principal = jwtPrincipal(issuer, parsed.claims, token);
 * ```
 */
export function jwtPrincipal(issuer: IssuerConfig, claims: Readonly<Record<string, unknown>>, token: string): Principal {
  return Object.freeze({
    issuer: issuer.name,
    subject: typeof claims.sub === 'string' ? claims.sub : undefined,
    claims: Object.freeze(claims),
    scopes: scopesOf(claims),
    kind: 'jwt' as const,
    upstreamToken: token,
    // A DPoP-bound token goes on in the DPoP scheme it came in (never presented as a bearer token).
    upstreamAuthorization: bearerAuthorization(token, (bindingsOf(claims.cnf) & DPOP_BOUND) !== 0 ? 'DPoP' : 'Bearer'),
  });
}

/** The instants between which verified claims stay valid (ms), for the cache. */
function validity(claims: Readonly<Record<string, unknown>>, issuer: IssuerConfig): { validFrom: number; validUntil: number } {
  let validUntil = (claims.exp as number) * 1000 + issuer.clockSkew;
  if (issuer.maxTokenAge !== undefined) validUntil = Math.min(validUntil, (claims.iat as number) * 1000 + issuer.maxTokenAge + issuer.clockSkew);
  const validFrom = typeof claims.nbf === 'number' ? claims.nbf * 1000 - issuer.clockSkew : -Infinity;
  return { validFrom, validUntil };
}

/**
 * Options of {@link createJwtVerifier}; all optional.
 *
 * @example
 * ```ts
 * const options: JwtVerifierOptions = { cache: new TokenCache(10_000), baseDir: config.baseDir };
 * ```
 */
export interface JwtVerifierOptions {
  /** Shared verified-token cache; null or absent: no cache. */
  cache?: TokenCache | null;
  /** Outbound fetcher (JWKS, discovery); default: one built from `issuer.tls`. */
  fetcher?: JsonFetcher;
  /** Relative TLS file paths resolve against this (default: cwd). */
  baseDir?: string;
  /** Where the JWK Set comes from instead of the network (tests, static keys). */
  loadKeys?: () => Promise<unknown>;
  /** An existing key source to share (the introspection authenticator and the JWT path of one issuer). */
  keys?: JwksSource;
}

/**
 * A JWT verifier for one issuer: header rules, key from the issuer's key set, signature, claims.
 * It judges the token, not the request: a token bound to a client certificate (`cnf.x5t#S256`,
 * RFC 8705) verifies here, and whoever accepts it for a request must also check it against that
 * request's certificate, on every request and every cache hit (`checkSender` in binding.ts; the
 * authenticate stage of src/authn/index.ts does).
 *
 * @example
 * ```ts
 * const verifier = createJwtVerifier(issuer, services, { cache });
 * await verifier.start();
 * const result = await verifier.verify(token);
 * if (!result.ok) return result.error; // 401 invalid_token, or 503 while no keys are known
 * ```
 */
export interface JwtVerifier {
  readonly issuer: IssuerConfig;
  readonly keys: JwksSource;
  verify(token: string): Promise<Result<VerifiedJwt>>;
  /** Like verify, for a token already parsed (and its `iss` already matched). */
  verifyParsed(parsed: ParsedJwt): Promise<Result<VerifiedJwt>>;
  /**
   * Synchronous attempt (hot path): the result, or undefined when keys must be fetched first
   * (no key set yet, or an unknown kid that may warrant a refetch).
   */
  tryVerifyParsed(parsed: ParsedJwt, now: number): Result<VerifiedJwt> | undefined;
  start(): Promise<void>;
  close(): Promise<void>;
  readiness(): Readiness;
}

const KEYS_UNAVAILABLE_RETRY_SECONDS = 5;
/** Tokens whose signature failed, remembered (per issuer) so a replayed forgery costs no crypto. */
const MAX_REMEMBERED_FORGERIES = 1024;

/**
 * Build a {@link JwtVerifier}. Does no I/O until `start()` (or the first token).
 *
 * @example
 * ```ts
 * const verifier = createJwtVerifier(issuer, services, { cache: new TokenCache(10_000) });
 * await verifier.start();
 * ```
 */
export function createJwtVerifier(issuer: IssuerConfig, services: GatewayServices, options: JwtVerifierOptions = {}): JwtVerifier {
  const cache = options.cache ?? null;
  const ownFetcher = options.keys || options.loadKeys || options.fetcher ? undefined : createFetcher(issuer.tls, options.baseDir ?? process.cwd());
  const keys =
    options.keys ??
    createJwksSource({ issuer, services, fetcher: options.fetcher ?? ownFetcher, load: options.loadKeys });
  const maxSize = Math.min(issuer.maxTokenSize, MAX_TOKEN_SIZE_CEILING);
  // A signature that failed with a key fails with that key forever: remember it until the key
  // leaves the key set. Bounded; cleared whole when full.
  const forgeries = new Map<string, { key: VerificationKey; error: InvalidToken }>();

  function keysUnavailable(): GatehouseError {
    return new ServiceUnavailable('GH_ERR_AUTH_KEYS_UNAVAILABLE', 'the keys to validate access tokens are not available yet', {
      detail: `no key set of issuer ${issuer.name} has been fetched`,
      retryAfter: KEYS_UNAVAILABLE_RETRY_SECONDS,
    });
  }

  function finish(parsed: ParsedJwt, set: KeySet, now: number, afterRefresh: boolean): Result<VerifiedJwt> | undefined {
    const header = parsed.header;
    const alg = header.alg as string;
    const found = set.select(header.kid as string | undefined, alg);
    if (!found.ok) {
      if (found.reason === 'unknown-kid') {
        if (!afterRefresh) return undefined;
        return { ok: false, error: new InvalidToken('GH_ERR_JWT_KID_UNKNOWN', 'the access token is signed with an unknown key', { detail: found.detail }) };
      }
      return { ok: false, error: new InvalidToken('GH_ERR_JWT_KEY_UNUSABLE', 'the access token is signed with a key that is not accepted', { detail: found.detail }) };
    }
    const key = found.key;
    const token = parsed.token;
    if (!verifyJws(key, alg, Buffer.from(token.slice(0, parsed.signingInputEnd), 'latin1'), parsed.signature)) {
      const error = new InvalidToken('GH_ERR_JWT_SIGNATURE_INVALID', 'the access token signature is invalid', {
        detail: `${alg} signature does not verify with key ${key.kid ?? '(no kid)'}`,
      });
      if (forgeries.size >= MAX_REMEMBERED_FORGERIES) forgeries.clear();
      forgeries.set(token, { key, error });
      return { ok: false, error };
    }
    if (afterRefresh) {
      // Time went by while the key set was fetched.
      const late = checkClaims(parsed.claims, issuer, now);
      if (late) return { ok: false, error: late };
    }
    const principal = jwtPrincipal(issuer, parsed.claims, token);
    const { validFrom, validUntil } = validity(parsed.claims, issuer);
    const entry: CachedToken = { issuer: issuer.name, principal, key, validFrom, validUntil };
    if (cache) cache.set(token, entry);
    return { ok: true, value: { issuer, header, claims: principal.claims, principal, key, entry } };
  }

  function tryVerifyParsed(parsed: ParsedJwt, now: number): Result<VerifiedJwt> | undefined {
    if (parsed.token.length > maxSize) {
      return { ok: false, error: new InvalidToken('GH_ERR_JWT_TOO_LARGE', 'the access token is too large', { detail: `${parsed.token.length} bytes, limit ${maxSize}` }) };
    }
    // The issuer is chosen by iss before any key is used.
    if (parsed.claims.iss !== issuer.issuer) return { ok: false, error: CLAIM_CHECKS[0]!.run(parsed.claims, issuer, now)! };
    const headerDenial = checkHeader(parsed.header, issuer);
    if (headerDenial) return { ok: false, error: headerDenial };
    // Claims before the key and the signature: an expired or misaddressed token (the usual
    // invalid token) costs no cryptography and triggers no key refetch. Acceptance still needs
    // the signature; the claims of a refused token are never trusted for anything.
    const claimsDenial = checkClaims(parsed.claims, issuer, now);
    if (claimsDenial) return { ok: false, error: claimsDenial };
    // (Looking a token up hashes all of it: skipped while no forgery is remembered.)
    const forged = forgeries.size === 0 ? undefined : forgeries.get(parsed.token);
    if (forged !== undefined && !forged.key.retired) return { ok: false, error: forged.error };
    const set = keys.current();
    if (set === null) return undefined;
    return finish(parsed, set, now, false);
  }

  async function verifyParsed(parsed: ParsedJwt): Promise<Result<VerifiedJwt>> {
    const first = tryVerifyParsed(parsed, services.now());
    if (first !== undefined) return first;
    // No key set yet, or an unknown kid: refetch at most once per cooldown (single in-flight).
    await keys.refreshIfAllowed();
    const set = keys.current();
    if (set === null) return { ok: false, error: keysUnavailable() };
    return finish(parsed, set, services.now(), true)!;
  }

  return {
    issuer,
    keys,
    verifyParsed,
    tryVerifyParsed,
    async verify(token) {
      if (cache) {
        const hit = cache.get(token, services.now());
        if (hit !== undefined && hit.issuer === issuer.name && hit.key !== null) {
          const p = hit.principal;
          return { ok: true, value: { issuer, header: {}, claims: p.claims, principal: p, key: hit.key, entry: hit } };
        }
      }
      const parsed = parseJwt(token, maxSize);
      if (!parsed.ok) return parsed;
      return verifyParsed(parsed.value);
    },
    start: () => keys.start(),
    async close() {
      await keys.close();
      await ownFetcher?.close();
    },
    readiness: () => keys.readiness(),
  };
}
