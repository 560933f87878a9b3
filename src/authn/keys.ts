import { constants, createPublicKey, verify as cryptoVerify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';

/**
 * Verification keys: a JWK Set turned into `KeyObject`s once, with the policy that decides which
 * JWK may ever verify which token algorithm (RFC 8725 §3.1, §3.2; the JWT issue's "Signature" list).
 *
 * Every key is imported once per key-set version; the hot path only calls {@link verifyJws}.
 */

/** Every JWS algorithm gatehouse can verify. Asymmetric only: `none` and `HS*` do not exist here. */
export type JwsAlgorithm =
  | 'RS256' | 'RS384' | 'RS512'
  | 'PS256' | 'PS384' | 'PS512'
  | 'ES256' | 'ES384' | 'ES512'
  | 'EdDSA' | 'Ed25519';

interface AlgorithmSpec {
  kty: 'RSA' | 'EC' | 'OKP';
  /** EC / OKP curves that fit; undefined for RSA. */
  curves: readonly string[] | undefined;
  hash: string | null;
  padding?: number;
  saltLength?: number;
}

const ALGORITHMS: Readonly<Record<JwsAlgorithm, AlgorithmSpec>> = {
  RS256: { kty: 'RSA', curves: undefined, hash: 'sha256', padding: constants.RSA_PKCS1_PADDING },
  RS384: { kty: 'RSA', curves: undefined, hash: 'sha384', padding: constants.RSA_PKCS1_PADDING },
  RS512: { kty: 'RSA', curves: undefined, hash: 'sha512', padding: constants.RSA_PKCS1_PADDING },
  // RFC 7518 §3.5: the salt is as long as the hash.
  PS256: { kty: 'RSA', curves: undefined, hash: 'sha256', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
  PS384: { kty: 'RSA', curves: undefined, hash: 'sha384', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
  PS512: { kty: 'RSA', curves: undefined, hash: 'sha512', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
  ES256: { kty: 'EC', curves: ['P-256'], hash: 'sha256' },
  ES384: { kty: 'EC', curves: ['P-384'], hash: 'sha384' },
  ES512: { kty: 'EC', curves: ['P-521'], hash: 'sha512' },
  EdDSA: { kty: 'OKP', curves: ['Ed25519', 'Ed448'], hash: null },
  Ed25519: { kty: 'OKP', curves: ['Ed25519'], hash: null },
};

/**
 * Whether `alg` names an algorithm gatehouse can verify (asymmetric, known).
 *
 * @example
 * ```ts
 * isJwsAlgorithm('ES256'); // true
 * isJwsAlgorithm('HS256'); // false
 * ```
 */
export function isJwsAlgorithm(alg: unknown): alg is JwsAlgorithm {
  return typeof alg === 'string' && Object.prototype.hasOwnProperty.call(ALGORITHMS, alg);
}

/** EC coordinate sizes in bytes (RFC 7518 §6.2.1.2) and signature sizes (r||s, §3.4). */
const EC_COORDINATE_BYTES: Readonly<Record<string, number>> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };
const OKP_KEY_BYTES: Readonly<Record<string, number>> = { Ed25519: 32, Ed448: 57 };
const OKP_SIGNATURE_BYTES: Readonly<Record<string, number>> = { Ed25519: 64, Ed448: 114 };

/** RSA limits: below 2048 bits is refused (RFC 7518 §3.3); above 8192 is refused to bound CPU per token. */
export const RSA_MIN_BITS = 2048;
/** See {@link RSA_MIN_BITS}. */
export const RSA_MAX_BITS = 8192;
/** At most this many entries of a JWK Set are looked at. */
export const MAX_JWKS_KEYS = 100;

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/**
 * One key an issuer published, imported once. Hot path: {@link verifyJws} reads the
 * precomputed `verifiers` and never builds an options object.
 */
export interface VerificationKey {
  readonly kid: string | undefined;
  readonly kty: 'RSA' | 'EC' | 'OKP';
  readonly crv: string | undefined;
  /** The token algorithms this key may verify: what its kty/crv/alg fit, within the issuer's allowlist. */
  readonly algorithms: ReadonlySet<string>;
  readonly keyObject: KeyObject;
  /** The only signature length (bytes) a valid signature with this key can have. */
  readonly signatureLength: number;
  /** RSA modulus size in bits; 0 for other key types. */
  readonly bits: number;
  /** The public members as canonical JSON: a refresh keeps the same object for an unchanged key. */
  readonly fingerprint: string;
  /** Set when the key leaves the issuer's key set; cached tokens verified with it are dropped. */
  retired: boolean;
  /** Per algorithm: hash name and the verify input, built once. */
  readonly verifiers: ReadonlyMap<string, { hash: string | null; input: VerifyKeyObjectInput | KeyObject }>;
}

/** A JWK that is never used, and why (for logs, `/readyz` details and `token inspect`). */
export interface RejectedKey {
  readonly kid: string | undefined;
  readonly reason: string;
}

/** The outcome of looking up a key for a token. */
export type KeySelection =
  | { readonly ok: true; readonly key: VerificationKey }
  | { readonly ok: false; readonly reason: 'unknown-kid' | 'unusable'; readonly detail: string };

/**
 * A trusted key set, the only place keys come from. `kid` is only a lookup key into it
 * (RFC 8725 §3.10): a token's header never brings or points to a key.
 *
 * @example
 * ```ts
 * const set = importKeySet(await fetcher.getJson(jwksUri, limits), ['RS256', 'ES256']);
 * const found = set.select(header.kid, header.alg);
 * if (found.ok && verifyJws(found.key, 'RS256', signingInput, signature)) { ... }
 * ```
 */
export class KeySet {
  readonly keys: readonly VerificationKey[];
  readonly rejected: readonly RejectedKey[];
  private readonly byKid = new Map<string, VerificationKey[]>();
  private readonly rejectedKids = new Map<string, string>();

  constructor(keys: readonly VerificationKey[], rejected: readonly RejectedKey[]) {
    this.keys = keys;
    this.rejected = rejected;
    for (const key of keys) {
      if (key.kid === undefined) continue;
      const list = this.byKid.get(key.kid);
      if (list) list.push(key);
      else this.byKid.set(key.kid, [key]);
    }
    for (const r of rejected) if (r.kid !== undefined && !this.rejectedKids.has(r.kid)) this.rejectedKids.set(r.kid, r.reason);
  }

  /** Whether any entry (usable or not) carries this kid. */
  hasKid(kid: string): boolean {
    return this.byKid.has(kid) || this.rejectedKids.has(kid);
  }

  /**
   * Find the one key that may verify a token with this `kid` and `alg`. Hot path.
   * Without a `kid`, the one key that fits `alg` is used; two that fit are ambiguous and refused.
   */
  select(kid: string | undefined, alg: string): KeySelection {
    const candidates = kid === undefined ? this.keys : this.byKid.get(kid);
    if (candidates === undefined) {
      const why = this.rejectedKids.get(kid!);
      if (why !== undefined) return { ok: false, reason: 'unusable', detail: `key ${kid} is not used: ${why}` };
      return { ok: false, reason: 'unknown-kid', detail: `no key with kid ${kid}` };
    }
    let found: VerificationKey | undefined;
    let fits = 0;
    for (let i = 0; i < candidates.length; i++) {
      const key = candidates[i]!;
      if (key.algorithms.has(alg)) {
        found = key;
        fits++;
      }
    }
    if (fits === 1) return { ok: true, key: found! };
    if (fits > 1) {
      return { ok: false, reason: 'unusable', detail: `${fits} keys${kid === undefined ? ' (the token has no kid)' : ` with kid ${kid}`} fit ${alg}: ambiguous` };
    }
    if (kid === undefined) {
      return { ok: false, reason: this.keys.length === 0 ? 'unknown-kid' : 'unusable', detail: `the token has no kid and no key fits ${alg}` };
    }
    const why = this.rejectedKids.get(kid);
    return {
      ok: false,
      reason: 'unusable',
      detail: `key ${kid} (${candidates.map(describeKey).join(', ')}) does not fit ${alg}${why ? `; another entry is not used: ${why}` : ''}`,
    };
  }
}

function describeKey(key: VerificationKey): string {
  return `${key.kty}${key.crv ? ` ${key.crv}` : ''}${key.bits ? ` ${key.bits} bits` : ''} for ${[...key.algorithms].join('/') || 'nothing'}`;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Strict base64url (RFC 7515 §2): no padding, no other characters, unused bits zero.
 * Returns null when `value` is not canonical base64url.
 *
 * @example
 * ```ts
 * decodeBase64Url('AQAB'); // <Buffer 01 00 01>
 * ```
 */
export function decodeBase64Url(value: string): Buffer | null {
  if (!B64URL.test(value) || value.length % 4 === 1) return null;
  if (!hasCanonicalTail(value, 0, value.length)) return null;
  return Buffer.from(value, 'base64url');
}

/**
 * Value of one base64url character, or -1.
 *
 * @example
 * ```ts
 * base64UrlValue('A'.charCodeAt(0)); // 0
 * ```
 */
export function base64UrlValue(c: number): number {
  if (c >= 65 && c <= 90) return c - 65; // A-Z
  if (c >= 97 && c <= 122) return c - 71; // a-z
  if (c >= 48 && c <= 57) return c + 4; // 0-9
  if (c === 45) return 62; // -
  if (c === 95) return 63; // _
  return -1;
}

/**
 * Whether the unused low bits of the last character of `s[start, end)` are zero (canonical encoding).
 *
 * @example
 * ```ts
 * hasCanonicalTail('AQ', 0, 2); // true
 * hasCanonicalTail('AR', 0, 2); // false: the same byte, non-canonical
 * ```
 */
export function hasCanonicalTail(s: string, start: number, end: number): boolean {
  const rem = (end - start) % 4;
  if (rem === 0) return true;
  if (rem === 1) return false;
  const last = base64UrlValue(s.charCodeAt(end - 1));
  return rem === 2 ? (last & 0x0f) === 0 : (last & 0x03) === 0;
}

function stripLeadingZeros(buf: Buffer): Buffer {
  let i = 0;
  while (i < buf.length - 1 && buf[i] === 0) i++;
  return i === 0 ? buf : buf.subarray(i);
}

function bitLength(buf: Buffer): number {
  const b = stripLeadingZeros(buf);
  if (b.length === 0 || (b.length === 1 && b[0] === 0)) return 0;
  return (b.length - 1) * 8 + (32 - Math.clz32(b[0]!));
}

type Jwk = Record<string, unknown>;

/** Why a JWK can never verify anything, or null when it passes the policy. */
function keyProblem(jwk: Jwk): string | null {
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') return 'kid is not a string';
  if (typeof jwk.kty !== 'string') return 'kty is missing';
  if (jwk.kty === 'oct') return 'it is a symmetric (oct) key; only asymmetric keys verify tokens';
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') return `kty ${jwk.kty} is not supported`;
  for (const member of PRIVATE_MEMBERS) {
    if (jwk[member] !== undefined) return `it holds private key material (${member}); a key set must hold public keys only`;
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use is ${JSON.stringify(jwk.use)}, not "sig"`;
  if (jwk.key_ops !== undefined) {
    if (!Array.isArray(jwk.key_ops) || !jwk.key_ops.includes('verify')) return 'key_ops does not include "verify"';
  }
  if (jwk.alg !== undefined) {
    if (!isJwsAlgorithm(jwk.alg)) return `alg ${JSON.stringify(jwk.alg)} is not an asymmetric JWS algorithm gatehouse verifies with`;
    const spec = ALGORITHMS[jwk.alg];
    if (spec.kty !== jwk.kty) return `alg ${jwk.alg} needs kty ${spec.kty}, not ${String(jwk.kty)}`;
    if (spec.curves && !spec.curves.includes(String(jwk.crv))) return `alg ${jwk.alg} needs crv ${spec.curves.join(' or ')}, not ${String(jwk.crv)}`;
  }
  return null;
}

/** The algorithms a key of this kty/crv (and optional alg) may verify. */
function fittingAlgorithms(kty: string, crv: string | undefined, alg: unknown): JwsAlgorithm[] {
  if (isJwsAlgorithm(alg)) return [alg];
  const out: JwsAlgorithm[] = [];
  for (const name of Object.keys(ALGORITHMS) as JwsAlgorithm[]) {
    const spec = ALGORITHMS[name];
    if (spec.kty !== kty) continue;
    if (spec.curves && !spec.curves.includes(String(crv))) continue;
    out.push(name);
  }
  return out;
}

function requireB64(jwk: Jwk, member: string): Buffer {
  const value = jwk[member];
  if (typeof value !== 'string' || value.length === 0) throw new KeyRefused(`${member} is missing`);
  const buf = decodeBase64Url(value);
  if (!buf) throw new KeyRefused(`${member} is not base64url`);
  return buf;
}

class KeyRefused extends Error {}

/**
 * Import one JWK under the policy, or explain why it is refused. The issuer's allowlist
 * narrows what the key may verify.
 *
 * @example
 * ```ts
 * const result = importVerificationKey(jwk, ['ES256']);
 * if ('reason' in result) log.warn(result.reason);
 * ```
 */
export function importVerificationKey(jwk: unknown, allowed: readonly string[]): VerificationKey | RejectedKey {
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) return { kid: undefined, reason: 'the entry is not a JSON object' };
  const k = jwk as Jwk;
  const kid = typeof k.kid === 'string' ? k.kid : undefined;
  const problem = keyProblem(k);
  if (problem) return { kid, reason: problem };
  const kty = k.kty as 'RSA' | 'EC' | 'OKP';
  const crv = typeof k.crv === 'string' ? k.crv : undefined;
  try {
    let publicJwk: Jwk;
    let signatureLength: number;
    let bits = 0;
    if (kty === 'RSA') {
      const n = requireB64(k, 'n');
      const e = requireB64(k, 'e');
      bits = bitLength(n);
      if (bits < RSA_MIN_BITS) throw new KeyRefused(`the RSA modulus has ${bits} bits; at least ${RSA_MIN_BITS} are required`);
      if (bits > RSA_MAX_BITS) throw new KeyRefused(`the RSA modulus has ${bits} bits; at most ${RSA_MAX_BITS} are accepted`);
      const eTrim = stripLeadingZeros(e);
      if (eTrim.length > 8) throw new KeyRefused('the RSA public exponent is too large');
      const exponent = BigInt(`0x${eTrim.toString('hex') || '0'}`);
      if (exponent < 65537n || exponent % 2n === 0n) throw new KeyRefused(`the RSA public exponent ${exponent} is weak (it must be odd and at least 65537)`);
      if (isRocaModulus(n)) throw new KeyRefused('the RSA modulus has the ROCA fingerprint (CVE-2017-15361)');
      publicJwk = { kty, n: k.n, e: k.e };
      signatureLength = Math.ceil(bits / 8);
    } else if (kty === 'EC') {
      const size = crv === undefined ? undefined : EC_COORDINATE_BYTES[crv];
      if (size === undefined) throw new KeyRefused(`crv ${String(k.crv)} is not P-256, P-384 or P-521`);
      if (requireB64(k, 'x').length !== size || requireB64(k, 'y').length !== size) throw new KeyRefused(`x and y must be ${size} bytes for ${crv}`);
      publicJwk = { kty, crv, x: k.x, y: k.y };
      signatureLength = size * 2;
    } else {
      const size = crv === undefined ? undefined : OKP_KEY_BYTES[crv];
      if (size === undefined) throw new KeyRefused(`crv ${String(k.crv)} is not a signature curve (Ed25519 or Ed448)`);
      if (requireB64(k, 'x').length !== size) throw new KeyRefused(`x must be ${size} bytes for ${crv}`);
      publicJwk = { kty, crv, x: k.x };
      signatureLength = OKP_SIGNATURE_BYTES[crv!]!;
    }
    const algorithms = fittingAlgorithms(kty, crv, k.alg).filter((a) => allowed.includes(a));
    if (algorithms.length === 0) {
      return { kid, reason: `it fits ${fittingAlgorithms(kty, crv, k.alg).join(', ')}, none of which the issuer's algorithms allow` };
    }
    let keyObject: KeyObject;
    try {
      // Only the public members are passed, so private material can never be imported.
      keyObject = createPublicKey({ key: publicJwk as never, format: 'jwk' });
    } catch (err) {
      throw new KeyRefused(`it cannot be imported (${(err as Error).message})`);
    }
    const verifiers = new Map<string, { hash: string | null; input: VerifyKeyObjectInput | KeyObject }>();
    for (const alg of algorithms) {
      const spec = ALGORITHMS[alg];
      if (kty === 'RSA') verifiers.set(alg, { hash: spec.hash, input: { key: keyObject, padding: spec.padding, saltLength: spec.saltLength } });
      else if (kty === 'EC') verifiers.set(alg, { hash: spec.hash, input: { key: keyObject, dsaEncoding: 'ieee-p1363' } });
      else verifiers.set(alg, { hash: null, input: keyObject });
    }
    return {
      kid,
      kty,
      crv,
      algorithms: new Set(algorithms),
      keyObject,
      signatureLength,
      bits,
      fingerprint: JSON.stringify([kid, k.alg ?? null, publicJwk, algorithms]),
      retired: false,
      verifiers,
    };
  } catch (err) {
    if (err instanceof KeyRefused) return { kid, reason: err.message };
    throw err;
  }
}

/**
 * Turn a JWK Set document into a {@link KeySet}. Throws when the document is not a JWK Set at all.
 * Keys that are unchanged since `previous` keep their object (and so their cached tokens); see
 * {@link retireKeys} for the keys that left.
 *
 * @example
 * ```ts
 * const next = importKeySet(document, issuer.algorithms, current);
 * ```
 */
export function importKeySet(document: unknown, allowed: readonly string[], previous?: KeySet | null): KeySet {
  if (document === null || typeof document !== 'object' || !Array.isArray((document as { keys?: unknown }).keys)) {
    throw new TypeError('the document is not a JWK Set (no "keys" array)');
  }
  const entries = (document as { keys: unknown[] }).keys;
  const known = new Map<string, VerificationKey>();
  if (previous) for (const key of previous.keys) known.set(key.fingerprint, key);
  const keys: VerificationKey[] = [];
  const rejected: RejectedKey[] = [];
  const limit = Math.min(entries.length, MAX_JWKS_KEYS);
  for (let i = 0; i < limit; i++) {
    const result = importVerificationKey(entries[i], allowed);
    if ('reason' in result) {
      rejected.push(result);
      continue;
    }
    keys.push(known.get(result.fingerprint) ?? result);
  }
  if (entries.length > MAX_JWKS_KEYS) rejected.push({ kid: undefined, reason: `the set has ${entries.length} keys; only the first ${MAX_JWKS_KEYS} are used` });
  return new KeySet(keys, rejected);
}

/**
 * Once `next` replaces `previous`: mark the keys that left as retired (their cached tokens are
 * dropped) and say which kids came and went. Not done by {@link importKeySet}, so that a set that
 * is then refused (e.g. no usable key) changes nothing.
 *
 * @example
 * ```ts
 * const { added, removed } = retireKeys(current, next);
 * ```
 */
export function retireKeys(previous: KeySet | null, next: KeySet): { added: string[]; removed: string[] } {
  const kept = new Set(next.keys);
  const before = new Set(previous?.keys ?? []);
  const removed: string[] = [];
  const added: string[] = [];
  for (const key of before) {
    if (!kept.has(key)) {
      key.retired = true;
      removed.push(key.kid ?? '(no kid)');
    }
  }
  for (const key of next.keys) if (!before.has(key)) added.push(key.kid ?? '(no kid)');
  return { added, removed };
}

/**
 * Verify a JWS signature with a key the policy allowed for `alg`. Hot path: synchronous,
 * no allocation beyond what `crypto.verify` does. ES* signatures are raw r||s (RFC 7518 §3.4).
 *
 * @example
 * ```ts
 * verifyJws(key, 'ES256', Buffer.from(token.slice(0, token.lastIndexOf('.'))), signature);
 * ```
 */
export function verifyJws(key: VerificationKey, alg: string, signingInput: Buffer, signature: Buffer): boolean {
  if (signature.length !== key.signatureLength) return false;
  const v = key.verifiers.get(alg);
  if (v === undefined) return false;
  try {
    return cryptoVerify(v.hash, signingInput, v.input, signature);
  } catch {
    return false;
  }
}

// ROCA (CVE-2017-15361): moduli made by the affected Infineon library are, modulo each small
// prime r, in the subgroup generated by 65537. The test is the published fingerprint method:
// a random modulus passes it for all primes below with negligible probability.
const ROCA_PRIMES = [
  11, 13, 17, 19, 37, 53, 61, 71, 73, 79, 97, 103, 107, 109, 127, 151, 157,
];
let rocaSubgroups: Set<number>[] | undefined;

function rocaTables(): Set<number>[] {
  if (rocaSubgroups) return rocaSubgroups;
  rocaSubgroups = ROCA_PRIMES.map((r) => {
    const set = new Set<number>();
    const g = 65537 % r;
    let x = 1;
    do {
      set.add(x);
      x = (x * g) % r;
    } while (x !== 1);
    return set;
  });
  return rocaSubgroups;
}

/**
 * Whether an RSA modulus has the ROCA fingerprint. Runs once per key import, never per request.
 *
 * @example
 * ```ts
 * isRocaModulus(Buffer.from(jwk.n, 'base64url'));
 * ```
 */
export function isRocaModulus(modulus: Buffer): boolean {
  const tables = rocaTables();
  for (let i = 0; i < ROCA_PRIMES.length; i++) {
    const r = ROCA_PRIMES[i]!;
    let rem = 0;
    for (let j = 0; j < modulus.length; j++) rem = (rem * 256 + modulus[j]!) % r;
    if (!tables[i]!.has(rem)) return false;
  }
  return true;
}
