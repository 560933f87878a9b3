import { hash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { DpopConfig, GatehouseConfig } from '../config/types.js';
import { failFastRedisClient } from '../store/redis-client.js';
import { DpopNonceRequired, GatehouseError, InvalidDpopProof, InvalidToken } from '../errors.js';
import { createNonceIssuer } from './dpop-nonce.js';
import type { RequestContext } from '../pipeline/context.js';
import { normalizeTarget } from '../route/normalize.js';
import { requestHost } from '../route/host.js';
import { decodeBase64Url, importVerificationKey, isJwsAlgorithm, verifyJws, type JwsAlgorithm, type VerificationKey } from './keys.js';

/**
 * DPoP proofs (RFC 9449): a DPoP-bound access token (`cnf.jkt`) is good only with a proof, in
 * the request's `DPoP` header, signed by the key the token is bound to, for this request.
 * The checks of §4.3 and §7.1, in order, each with its own precise reason:
 *
 * 1. exactly one `DPoP` header, at most {@link MAX_PROOF_SIZE} characters, three base64url parts;
 * 2. the header: `typ` `dpop+jwt`, an `alg` of `dpop.algorithms` (asymmetric only), a public
 *    `jwk` (no private member) that fits the algorithm under the same key policy as an issuer's
 *    keys (RSA ≥ 2048 bits, known curves, …), no `crit`;
 * 3. the signature, with that key;
 * 4. the claims: `jti` (1–128 characters), `htm` equal to the method, `htu` equal to the
 *    request's URI without query and fragment: the scheme and host the client addressed (a
 *    trusted proxy's `X-Forwarded-Proto` and `X-Forwarded-Host` count), and the path after the
 *    same normalization as the request's own; `iat` within `proofMaxAge` (and `clockSkew`);
 *    `ath` the base64url SHA-256 of the access token;
 * 5. the key's RFC 7638 thumbprint equal to the token's `cnf.jkt`;
 * 6. the proof not seen before within its lifetime (`jti`, per key): in this process's memory,
 *    and, with a top-level `redis` section, in Redis, so that every worker and every gateway
 *    sharing it refuses a replay (`SET … NX PX`; Redis unreachable: `redis.onError`).
 *
 * Nothing in a proof loads a key: its `jwk` is only trusted because the token, verified with
 * the issuer's keys, names that key's thumbprint. One signature check per request; synchronous
 * unless the replay memory is shared through Redis.
 */

/** A proof longer than this is refused before it is decoded (an RSA-8192 proof is ≈ 2.6 KB). */
export const MAX_PROOF_SIZE = 8 * 1024;
const MAX_JTI_LENGTH = 128;

/** Members of a JWK that hold private key material (RFC 7518 §6). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * Proofs seen within their lifetime, by `jkt` and `jti`, in two generations of one lifetime
 * each: an entry is kept at least one lifetime (`proofMaxAge` + 2 × `clockSkew`), so a proof is
 * refused for as long as it could be accepted. Full (`maxEntries`): new proofs are refused
 * (503) rather than old ones forgotten.
 */
export class ProofReplayCache {
  private current = new Map<string, true>();
  private previous = new Map<string, true>();
  private rotateAt = 0;
  private lifetime: number;
  maxEntries: number;

  constructor(lifetime: number, maxEntries: number) {
    this.lifetime = lifetime;
    this.maxEntries = maxEntries;
  }

  /** Adopt new settings (a reload); what was seen stays seen. */
  configure(lifetime: number, maxEntries: number): void {
    this.lifetime = Math.max(this.lifetime, lifetime);
    this.maxEntries = maxEntries;
  }

  /** 'fresh' (now remembered), 'replayed', or 'full'. */
  admit(key: string, now: number): 'fresh' | 'replayed' | 'full' {
    if (now >= this.rotateAt) {
      // Two lifetimes without a rotation: everything held is older than any acceptable proof.
      this.previous = now >= this.rotateAt + this.lifetime ? new Map() : this.current;
      this.current = new Map();
      this.rotateAt = now + this.lifetime;
    }
    if (this.current.has(key) || this.previous.has(key)) return 'replayed';
    if (this.current.size + this.previous.size >= this.maxEntries) return 'full';
    this.current.set(key, true);
    return 'fresh';
  }

  get size(): number {
    return this.current.size + this.previous.size;
  }
}

/** One per process: a reload must not forget the proofs already seen. */
let sharedReplay: ProofReplayCache | null = null;

/**
 * The process's replay cache, adjusted to `config`.
 *
 * @example
 * ```ts
 * const replay = acquireReplayCache(config.dpop);
 * ```
 */
export function acquireReplayCache(config: DpopConfig): ProofReplayCache {
  const lifetime = config.proofMaxAge + 2 * config.clockSkew;
  if (sharedReplay === null) sharedReplay = new ProofReplayCache(lifetime, config.maxProofs);
  else sharedReplay.configure(lifetime, config.maxProofs);
  return sharedReplay;
}

/** What a replay memory shared through Redis answers. */
export type SharedAdmission = 'fresh' | 'replayed' | 'unavailable';

/**
 * Proofs seen by every gateway process that shares one Redis: one `SET key 1 NX PX lifetime`
 * per accepted proof (the key a SHA-256 of the key thumbprint and `jti`). Commands fail fast
 * (no offline queue); any failure is 'unavailable'.
 */
export interface SharedReplayStore {
  admit(key: string, lifetime: number): Promise<SharedAdmission>;
  release(): Promise<void>;
}

const sharedStores = new Map<string, { client: Redis | Cluster; refs: number }>();

/**
 * The shared replay store for a config's `redis` section: one connection per process and
 * Redis, counted by its users; `release()` closes it with the last one.
 *
 * @example
 * ```ts
 * const shared = config.redis ? acquireSharedReplay(config.redis, log) : null;
 * // …
 * await shared?.release();
 * ```
 */
export function acquireSharedReplay(redis: NonNullable<GatehouseConfig['redis']>, log: Logger): SharedReplayStore {
  const identity = JSON.stringify([redis.url, redis.cluster, redis.timeout]);
  let held = sharedStores.get(identity);
  if (held === undefined) {
    const client = failFastRedisClient(redis, log, 'DPoP replay memory', { area: 'dpop' });
    held = { client, refs: 0 };
    sharedStores.set(identity, held);
  }
  held.refs++;
  const entry = held;
  const prefix = `${redis.keyPrefix}dpop:`;
  let released = false;
  return {
    async admit(key, lifetime) {
      if (entry.client.status !== 'ready') return 'unavailable';
      try {
        const set = await entry.client.set(prefix + hash('sha256', key, 'base64url'), '1', 'PX', Math.ceil(lifetime), 'NX');
        return set === 'OK' ? 'fresh' : 'replayed';
      } catch {
        return 'unavailable';
      }
    },
    async release() {
      if (released) return;
      released = true;
      if (--entry.refs > 0) return;
      if (sharedStores.get(identity) === entry) sharedStores.delete(identity);
      entry.client.disconnect();
    },
  };
}

/** Where, besides this process's memory, a proof is remembered. */
export interface SharedReplay {
  readonly store: SharedReplayStore;
  /** `redis.onError`: failClosed answers 503 while Redis cannot say; failOpen relies on this process's memory. */
  readonly onError: 'failOpen' | 'failClosed';
  readonly log: Logger;
}

const planCheckers = new WeakMap<GatehouseConfig, { checker: DpopChecker; shared: SharedReplayStore | null; refs: number }>();

/**
 * The DPoP checker of one gateway plan (config object), shared by the JWT authenticate stages
 * and every introspection authenticator of that plan — one memory of checked proof headers, one
 * hold on the shared Redis. Each call is paired with `release()`; the last one lets go of Redis.
 *
 * @example
 * ```ts
 * const dpop = acquireDpopChecker(config, services.now, services.log);
 * // … dpop.checker.check(ctx, token, jkt) …
 * await dpop.release();
 * ```
 */
export function acquireDpopChecker(config: GatehouseConfig, now: () => number, log: Logger): { checker: DpopChecker; release(): Promise<void> } {
  let held = planCheckers.get(config);
  if (held === undefined) {
    const shared = config.redis ? acquireSharedReplay(config.redis, log) : null;
    const checker = createDpopChecker(config.dpop, now, acquireReplayCache(config.dpop), shared && { store: shared, onError: config.redis!.onError, log });
    held = { checker, shared, refs: 0 };
    planCheckers.set(config, held);
  }
  held.refs++;
  const entry = held;
  let released = false;
  return {
    checker: entry.checker,
    async release() {
      if (released) return;
      released = true;
      if (--entry.refs > 0) return;
      if (planCheckers.get(config) === entry) planCheckers.delete(config);
      await entry.shared?.release();
    },
  };
}

/**
 * The DPoP proof check of one gateway plan (its `dpop` settings and the process's replay cache).
 *
 * @example
 * ```ts
 * const dpop = createDpopChecker(config.dpop, () => Date.now());
 * const denial = dpop.check(ctx, token, cnf.jkt); // null: the proof is valid for this request
 * ```
 */
export interface DpopChecker {
  /** Null: valid for this request. A promise only when the replay memory is shared (Redis). */
  check(ctx: RequestContext, token: string, jkt: string): GatehouseError | null | Promise<GatehouseError | null>;
}

export function createDpopChecker(
  config: DpopConfig,
  now: () => number,
  replay: ProofReplayCache = acquireReplayCache(config),
  shared: SharedReplay | null = null,
): DpopChecker {
  const algorithms = new Set<string>(config.algorithms);
  const maxAge = config.proofMaxAge;
  const skew = config.clockSkew;
  const lifetime = maxAge + 2 * skew;
  const bad = (detail: string) => new InvalidDpopProof('GH_ERR_DPOP_PROOF_INVALID', detail);
  const nonces = config.nonce ? createNonceIssuer(config.nonce.lifetime, config.nonce.secret) : null;
  const replayed = () => new InvalidDpopProof('GH_ERR_DPOP_PROOF_REPLAYED', 'this proof (jti) was already used');
  let lastFailOpenWarning = 0;

  /** The shared memory's answer for a proof this process has not seen. */
  async function sharedAdmission(store: SharedReplayStore, key: string): Promise<GatehouseError | null> {
    const admitted = await store.admit(key, lifetime);
    if (admitted === 'fresh') return null;
    if (admitted === 'replayed') return replayed();
    if (shared!.onError === 'failClosed') {
      return new GatehouseError('GH_ERR_DPOP_REPLAY_STORE_UNAVAILABLE', 503, 'the gateway cannot check DPoP proofs right now', {
        detail: 'Redis did not answer the replay check (redis.onError: failClosed)',
        headers: { 'retry-after': '1' },
      });
    }
    const at = Date.now();
    if (at - lastFailOpenWarning > 10_000) {
      lastFailOpenWarning = at;
      shared!.log.warn({ area: 'dpop' }, 'DPoP replay memory: redis did not answer; proofs are checked against this process only (redis.onError: failOpen)');
    }
    return null;
  }

  // Checked proof headers by their base64url text, in two generations (at most MAX_HEADERS):
  // importing a P-256 JWK validates its point, ≈ 70 µs, as much as the signature check.
  let headers = new Map<string, ProofHeader>();
  let oldHeaders = new Map<string, ProofHeader>();

  /** The checked header of a proof, or why it is refused. */
  function proofHeader(segment: string): ProofHeader | string {
    let known = headers.get(segment);
    if (known !== undefined) return known;
    known = oldHeaders.get(segment);
    if (known === undefined) {
      const checked = checkHeader(segment, algorithms, config.algorithms);
      if (typeof checked === 'string') return checked;
      known = checked;
    }
    headers.set(segment, known);
    if (headers.size >= MAX_HEADERS / 2) {
      oldHeaders = headers;
      headers = new Map();
    }
    return known;
  }

  function check(ctx: RequestContext, token: string, jkt: string): GatehouseError | null | Promise<GatehouseError | null> {
    // 1. One header, of a sane size and shape.
    const raw = ctx.rawHeaders;
    if (raw !== undefined) {
      let seen = 0;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!;
        if (name.length === 4 && name.toLowerCase() === 'dpop' && ++seen > 1) return bad('more than one DPoP header');
      }
    }
    const proof = ctx.headers.dpop;
    if (typeof proof !== 'string' || proof.length === 0) {
      return new InvalidDpopProof('GH_ERR_DPOP_PROOF_MISSING', 'a DPoP-bound token (cnf.jkt) came without a DPoP proof header');
    }
    if (proof.length > MAX_PROOF_SIZE) return bad(`the proof is ${proof.length} characters; at most ${MAX_PROOF_SIZE} are accepted`);
    const dot1 = proof.indexOf('.');
    const dot2 = dot1 < 0 ? -1 : proof.indexOf('.', dot1 + 1);
    if (dot1 <= 0 || dot2 <= dot1 + 1 || dot2 === proof.length - 1 || proof.indexOf('.', dot2 + 1) !== -1) return bad('the proof is not a compact JWS (three non-empty parts)');
    // 2. The header (a client sends the same one with every proof: its checked form is kept).
    const header = proofHeader(proof.slice(0, dot1));
    if (typeof header === 'string') return bad(header);
    const payload = decodeJson(proof.slice(dot1 + 1, dot2));
    if (payload === null) return bad('the proof payload is not base64url-encoded JSON object');
    const signature = decodeBase64Url(proof.slice(dot2 + 1));
    if (signature === null) return bad('the proof signature is not base64url');
    const { alg, key } = header;

    // 3. The signature.
    if (!verifyJws(key, alg, Buffer.from(proof.slice(0, dot2), 'latin1'), signature)) return bad('the proof signature does not verify with its jwk');

    // 4. The claims.
    const jti = payload.jti;
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) return bad(`jti must be a string of 1 to ${MAX_JTI_LENGTH} characters`);
    if (payload.htm !== ctx.method) return bad(`htm ${JSON.stringify(payload.htm)} is not the request's method ${ctx.method}`);
    const htuProblem = checkHtu(payload.htu, ctx);
    if (htuProblem !== null) return bad(htuProblem);
    const iat = payload.iat;
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return bad('iat must be a number');
    const at = now();
    const issuedAt = iat * 1000;
    if (issuedAt > at + skew) return bad(`iat is ${Math.round((issuedAt - at) / 1000)} s in the future (clock skew allowed: ${skew / 1000} s)`);
    if (issuedAt < at - maxAge - skew) return bad(`the proof is ${Math.round((at - issuedAt) / 1000)} s old; at most ${maxAge / 1000} s (+${skew / 1000} s skew) are accepted`);
    if (typeof payload.ath !== 'string') return bad('ath (the hash of the access token) is missing');
    if (payload.ath !== hash('sha256', token, 'base64url')) return bad('ath does not match the access token');
    if (nonces !== null) {
      // Server-provided nonce (RFC 9449 §9): refused before the replay memory, so the client's retry with a new proof is not a replay.
      const given = payload.nonce;
      if (typeof given !== 'string') return new DpopNonceRequired(nonces.current(at), 'the proof has no nonce (dpop.nonce is on)');
      const verdict = nonces.check(given, at);
      if (verdict === 'unknown') return new DpopNonceRequired(nonces.current(at), 'the proof\'s nonce was not issued by this gateway (or another with the same dpop.nonce.secret)');
      if (verdict === 'expired') return new DpopNonceRequired(nonces.current(at), 'the proof\'s nonce has expired');
      // Still good, but a newer one exists: the answer offers it (RFC 9449 §8.2).
      if (verdict === 'previous') ctx.responseHeaders.push(['dpop-nonce', nonces.current(at)]);
    }

    // 5. The binding.
    if (header.thumbprint !== jkt) {
      return new InvalidToken('GH_ERR_DPOP_KEY_MISMATCH', 'the access token is bound to another DPoP key', {
        detail: 'the thumbprint of the proof jwk is not the token\'s cnf.jkt',
        dpop: true,
      });
    }

    // 6. Replay.
    const seen = `${jkt} ${jti}`;
    const admitted = replay.admit(seen, at);
    if (admitted === 'replayed') return replayed();
    if (admitted === 'full') {
      return new GatehouseError('GH_ERR_DPOP_REPLAY_CACHE_FULL', 503, 'the gateway cannot take more DPoP proofs right now', {
        detail: `${replay.size} proofs are remembered (dpop.maxProofs); new proofs are refused until the oldest expire`,
        headers: { 'retry-after': String(Math.ceil(lifetime / 1000)) },
      });
    }
    return shared === null ? null : sharedAdmission(shared.store, seen);
  }

  return { check };
}

/** A proof header that passed its checks: what the rest of the proof is checked with. */
interface ProofHeader {
  readonly alg: JwsAlgorithm;
  readonly key: VerificationKey;
  /** RFC 7638 thumbprint of the header's `jwk`. */
  readonly thumbprint: string;
}

/** How many checked proof headers (client keys) a checker keeps. */
const MAX_HEADERS = 10_000;

/** Check a proof's header segment: `typ`, `alg`, `crit`, a public `jwk` under the key policy. */
function checkHeader(segment: string, algorithms: ReadonlySet<string>, allowed: readonly string[]): ProofHeader | string {
  const header = decodeJson(segment);
  if (header === null) return 'the proof header is not base64url-encoded JSON object';
  if (header.typ !== 'dpop+jwt') return `typ ${JSON.stringify(header.typ)} is not "dpop+jwt"`;
  const alg = header.alg;
  if (!isJwsAlgorithm(alg) || !algorithms.has(alg)) return `alg ${JSON.stringify(alg)} is not one of ${allowed.join(', ')}`;
  if (header.crit !== undefined) return 'crit is not supported in a proof';
  const jwk = header.jwk;
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) return 'the proof header has no jwk object';
  for (const member of PRIVATE_MEMBERS) {
    if ((jwk as Record<string, unknown>)[member] !== undefined) return `the proof jwk holds private key material ("${member}")`;
  }
  const key = importVerificationKey(jwk, [alg]);
  if ('reason' in key) return `the proof jwk is refused: ${key.reason}`;
  return { alg, key, thumbprint: jwkThumbprint(jwk as Record<string, unknown>) };
}

/**
 * Why `htu` is not this request's URI, or null. Compared: the scheme (`https` when gatehouse or
 * a trusted proxy in front terminated TLS), host and port (the request's `Host`, the default
 * port implied), and the path in gatehouse's one spelling (src/route/normalize.ts). Query and
 * fragment are ignored (RFC 9449 §4.3).
 */
function checkHtu(htu: unknown, ctx: RequestContext): string | null {
  if (typeof htu !== 'string' || htu.length === 0) return 'htu must be a URI';
  let url: URL;
  try {
    url = new URL(htu);
  } catch {
    return `htu ${JSON.stringify(htu.slice(0, 200))} is not a URI`;
  }
  const scheme = ctx.secure ? 'https:' : 'http:';
  if (url.protocol !== scheme) return `htu scheme ${url.protocol.slice(0, -1)} is not the request's ${scheme.slice(0, -1)}`;
  const host = publicHost(ctx);
  let requestHost: string;
  try {
    requestHost = new URL(`${scheme}//${host}`).host;
  } catch {
    return 'the request has no usable Host';
  }
  if (url.host !== requestHost) return `htu host ${url.host} is not the request's ${requestHost}`;
  const path = normalizeTarget(url.pathname, undefined, true);
  if (!path.ok || path.path !== ctx.targetPath) return `htu path ${url.pathname} is not the request's ${ctx.targetPath}`;
  return null;
}

/**
 * The host the client addressed: a trusted proxy's `X-Forwarded-Host` (its first value, as the
 * proxy nearest the client set it), else the request's `Host` (`:authority` on HTTP/2). The
 * runner's one trust decision for the peer (`ctx.peerTrusted`), as for `X-Forwarded-Proto`.
 */
function publicHost(ctx: RequestContext): string {
  if (ctx.peerTrusted) {
    const forwarded = ctx.headers['x-forwarded-host'];
    const first = typeof forwarded === 'string' ? forwarded.split(',')[0]!.trim() : '';
    if (first !== '') return first;
  }
  return requestHost(ctx.headers) ?? '';
}

/**
 * The JWK thumbprint of RFC 7638 (SHA-256, base64url): the required members of the key type in
 * lexicographic order, as JSON without whitespace. Only called with a key `importVerificationKey`
 * accepted, so the members are present strings.
 *
 * @example
 * ```ts
 * jwkThumbprint({ kty: 'EC', crv: 'P-256', x: '…', y: '…' }); // 43 base64url characters
 * ```
 */
export function jwkThumbprint(jwk: Record<string, unknown>): string {
  let canonical: string;
  if (jwk.kty === 'RSA') canonical = `{"e":${JSON.stringify(jwk.e)},"kty":"RSA","n":${JSON.stringify(jwk.n)}}`;
  else if (jwk.kty === 'EC') canonical = `{"crv":${JSON.stringify(jwk.crv)},"kty":"EC","x":${JSON.stringify(jwk.x)},"y":${JSON.stringify(jwk.y)}}`;
  else canonical = `{"crv":${JSON.stringify(jwk.crv)},"kty":${JSON.stringify(jwk.kty)},"x":${JSON.stringify(jwk.x)}}`;
  return hash('sha256', canonical, 'base64url');
}

function decodeJson(part: string): Record<string, unknown> | null {
  const bytes = decodeBase64Url(part);
  if (bytes === null) return null;
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
