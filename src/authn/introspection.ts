import { createHash, createPrivateKey, hash, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT } from 'jose';
import type { Logger } from 'pino';
import { Agent, request, type Dispatcher } from 'undici';
import type { GatehouseConfig, IntrospectionConfig, IssuerConfig } from '../config/types.js';
import { InvalidToken, ServiceUnavailable, type GatehouseError, type GatehouseErrorCode, type Result } from '../errors.js';
import type { Authenticator, AuthOutcome, Principal, RequestContext } from '../pipeline/context.js';
import { bearerAuthorization } from './bearer.js';
import { checkConfirmation, checkSender, type BindingCodes } from './binding.js';
import { acquireDpopChecker } from './dpop.js';
import type { GatewayServices, Readiness } from '../pipeline/runtime.js';
import { clientTlsOptions, isOutboundTimeout, readBoundedBody } from '../forward/outbound.js';
import { fetchDiscovery } from './discovery.js';
import { createFetcher } from './fetch.js';
import { acquireGatewayKeys, type GatewayKeys } from './gateway-keys.js';
import { acquireIntrospectionCache, tokenKey, type IntrospectionCache, type IntrospectionEntry } from './introspection-cache.js';
import { scopesOf } from './jwt.js';
import { createMinter, type MintedToken, type Minter } from './mint.js';
import { createSignedResponseVerifier, type SignedResponseVerifier } from './introspection-jwt.js';

/**
 * An introspection authenticator, with the lifecycle hooks the authn area drives.
 *
 * @example
 * ```ts
 * const a: IntrospectionAuthenticator = createIntrospectionAuthenticator(issuer, config, services);
 * await a.start(); a.readiness(); await a.close();
 * ```
 */
export type IntrospectionAuthenticator = Authenticator & {
  start(): Promise<void>;
  close(): Promise<void>;
  readiness(): Readiness;
};

/** Seconds a client is told to wait when the introspection endpoint cannot be reached. */
const RETRY_AFTER_SECONDS = 2;
/** Consecutive failures after which misses fail fast for {@link BREAKER_OPEN_MS}. */
const BREAKER_THRESHOLD = 3;
const BREAKER_OPEN_MS = 2_000;
/** After a failed discovery, wait this long before the next attempt (requests get 503 meanwhile). */
const DISCOVERY_RETRY_MS = 1_000;
/** A minted JWT is re-minted when it has less than this left (the upstream must still accept it). */
const MINT_MARGIN_S = 10;
/**
 * Distinct tokens being introspected at once, per issuer. Beyond it a new miss is 503 at once:
 * a flood of random tokens cannot queue unbounded work in front of the authorization server.
 */
const MAX_IN_FLIGHT = 256;
/** RFC 6750 §2.1 b68token; anything else cannot be a bearer token and is never sent out. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const FORM = 'application/x-www-form-urlencoded';
/** `cnf` refusals of this path (src/authn/binding.ts). */
const INTROSPECTION_BINDING_CODES: BindingCodes = Object.freeze({
  malformed: 'GH_ERR_INTROSPECTION_INVALID_RESPONSE',
  constrained: 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED',
});

interface Exchange {
  status: number;
  contentType: string;
  body: Buffer;
}

/** Outcome of one introspection round trip, before any per-request check. */
type Lookup = Result<IntrospectionEntry>;

/**
 * Validates opaque (by-reference) access tokens with RFC 7662 token introspection and swaps
 * them for a JWT the upstream can verify (the phantom token pattern, issue 6).
 *
 * - POST `token` + `token_type_hint=access_token`, authenticated with `client_secret_basic`
 *   (default), `client_secret_post` or `private_key_jwt`; the endpoint is configured or found by
 *   discovery (`introspection_endpoint`). TLS is always verified (`tls.ca` adds a CA).
 * - `active: false` → 401 `GH_ERR_INTROSPECTION_INACTIVE`. An active answer is checked like a
 *   JWT: `exp`, `nbf`, `iss` and `aud` where present, `token_type` if present, `cnf`.
 * - The upstream gets a JWT: the authorization server's own (`accept: application/jwt`, verified
 *   with the issuer's keys), or one gatehouse mints (plain JSON, or RFC 9701 signed responses).
 * - Results are cached by SHA-256 of the token for min(exp − now, `cacheTtl`); inactive ones for
 *   `negativeCacheTtl`. Concurrent requests with the same uncached token share one call. An
 *   entry another gateway wrote to the shared Redis is used at most this gateway's own TTL,
 *   counted from when the authorization server answered (`checkedAt`).
 * - `cnf`: `x5t#S256` must match the connection's client certificate, `jkt` (with `token_type`
 *   DPoP) needs a DPoP proof by that key, on every request (cache hits too); any other
 *   confirmation method is refused (src/authn/binding.ts, shared with JWTs).
 * - Endpoint down or slow → 503 `GH_ERR_INTROSPECTION_UNAVAILABLE` with `Retry-After`, never a pass.
 *
 * @example
 * ```ts
 * const authenticator = createIntrospectionAuthenticator(config.issuers[0], config, services);
 * await authenticator.start();
 * const outcome = await authenticator.authenticate(token, ctx);
 * if (outcome.kind === 'principal') ctx.principal = outcome.principal; // upstreamToken is a JWT
 * await authenticator.close();
 * ```
 */
export function createIntrospectionAuthenticator(
  issuer: IssuerConfig,
  config: GatehouseConfig,
  services: GatewayServices,
): IntrospectionAuthenticator {
  const intro = issuer.introspection;
  if (!intro) throw new Error(`issuer ${issuer.name} has no introspection section`);
  if (intro.accept !== 'application/json' && !issuer.jwksUri && !issuer.discovery) {
    // Signed answers are verified with the issuer's keys; without a source they never could be.
    throw new Error(`accept: ${intro.accept} needs the issuer's keys: set jwksUri, or discovery: true`);
  }
  const log: Logger = services.log.child({ area: 'authn', issuer: issuer.name, authenticator: 'introspection' });
  const now = services.now;
  const skew = issuer.clockSkew / 1000;
  const audiences = new Set(issuer.audiences);
  const dpopHold = acquireDpopChecker(config, now, log);
  const dpop = dpopHold.checker;

  // Hot path: metric children are bound once.
  const calls = services.metrics.counter('gatehouse_introspection_requests_total', 'Introspection calls, by issuer and result.', ['issuer', 'result']);
  const cacheLookups = services.metrics.counter('gatehouse_introspection_cache_total', 'Introspection cache lookups, by issuer and result.', ['issuer', 'result']);
  const callActive = calls.labels(issuer.name, 'active');
  const callInactive = calls.labels(issuer.name, 'inactive');
  const callFailed = calls.labels(issuer.name, 'error');
  const cacheHit = cacheLookups.labels(issuer.name, 'hit');
  const cacheMiss = cacheLookups.labels(issuer.name, 'miss');

  /** aud of minted JWTs per upstream: the upstream's `audience`, the issuer's, or its first audience. */
  const audienceFor = new Map<string, string>();
  const defaultAudience = intro.audience ?? issuer.audiences[0] ?? config.gateway.issuer;
  for (const u of config.upstreams) audienceFor.set(u.name, u.audience ?? defaultAudience);

  // Everything that can throw on a bad config (key and certificate files) comes first, so a
  // failed construction leaves no connection pool or cache behind.
  const clientAuth = buildClientAuth(issuer, intro, config.baseDir);
  const agent: Dispatcher = new Agent({
    connect: { ...clientTlsOptions(issuer.tls, config.baseDir), timeout: intro.timeout },
    keepAliveTimeout: 10_000,
    connections: 32,
  });
  // Kept across reloads while everything an entry depends on stays the same (the checks, the
  // minting settings, the audiences, the store): a reload does not send every token back.
  const cacheIdentity = JSON.stringify([
    config.baseDir,
    issuer,
    config.gateway.issuer,
    config.gateway.tokenTtl,
    config.gateway.algorithm,
    [...audienceFor],
    config.redis,
    config.tokenCache.maxEntries,
  ]);
  const cache: (IntrospectionCache & { release(): Promise<void> }) | null =
    intro.cacheTtl > 0
      ? acquireIntrospectionCache(cacheIdentity, {
          issuer: issuer.name,
          // Gateways sharing a Redis share entries only when they check and mint alike: an entry
          // accepted under laxer rules (other audiences, skew, mode) is never used here.
          namespace: hash(
            'sha256',
            JSON.stringify([issuer.issuer, intro.clientId, issuer.audiences, issuer.clockSkew, intro.accept, config.gateway.issuer, config.gateway.tokenTtl, [...audienceFor]]),
            'base64url',
          ).slice(0, 12),
          maxEntries: config.tokenCache.maxEntries,
          // The namespace leaves the TTLs out (gateways with other TTLs still share entries), so
          // each reader bounds what it reads by its own: another gateway's 60 s never makes a
          // revoked token live longer here than this gateway's cacheTtl.
          maxAge: intro.cacheTtl,
          negativeMaxAge: Math.min(intro.negativeCacheTtl, intro.cacheTtl),
          log,
          redis: config.redis,
          secret: clientAuth.secret,
        })
      : null;
  // The AS's own JWT goes upstream with application/jwt; every other mode mints.
  const keys: GatewayKeys | null = intro.accept === 'application/jwt' ? null : acquireGatewayKeys(config, now);
  const minter: Minter | null = keys ? createMinter(keys, config.gateway) : null;
  const signed: SignedResponseVerifier | null =
    intro.accept === 'application/json' ? null : createSignedResponseVerifier(issuer, intro, config, services);

  const inactive = new InvalidToken('GH_ERR_INTROSPECTION_INACTIVE', 'the access token is not active');
  const inflight = new Map<string, Promise<Lookup>>();
  /** Principals already built for an entry, by audience (hot path: a cache hit allocates nothing). */
  const principals = new WeakMap<IntrospectionEntry, Map<string, { kind: 'principal'; principal: Principal }>>();
  const inactiveOutcome: AuthOutcome = Object.freeze({ kind: 'denied', error: inactive });
  const refusals = new Map<GatehouseErrorCode, AuthOutcome>();
  /** A refusal from the negative cache, with the code it was first refused with (one object per code). */
  function cachedRefusal(code: GatehouseErrorCode): AuthOutcome {
    let outcome = refusals.get(code);
    if (!outcome) {
      outcome = Object.freeze({ kind: 'denied', error: new InvalidToken(code, 'the access token is not valid', { detail: 'refused before (negative cache)' }) });
      refusals.set(code, outcome);
    }
    return outcome;
  }

  let endpoint: string | undefined = intro.endpoint;
  let discovering: Promise<string | undefined> | null = null;
  let lastDiscoveryFailure = 0;
  let discoveryError: string | undefined;
  let failures = 0;
  let breakerOpenUntil = 0;
  let lastError: { at: number; reason: string } | undefined;
  let lastSuccess = 0;
  let closed = false;
  let lastWarned = -Infinity;
  let suppressed = 0;

  function unavailable(reason: string, cause?: unknown): GatehouseError {
    return new ServiceUnavailable('GH_ERR_INTROSPECTION_UNAVAILABLE', 'the access token cannot be checked right now', {
      retryAfter: RETRY_AFTER_SECONDS,
      detail: reason,
      cause,
    });
  }

  /** The gateway cannot sign (key directory unusable): nothing to forward, never a pass. */
  function keysUnavailable(err: unknown): GatehouseError {
    log.error({ err: (err as Error)?.message }, 'introspection: cannot mint the upstream JWT');
    return new ServiceUnavailable('GH_ERR_NOT_READY', 'the gateway cannot forward this request right now', {
      retryAfter: RETRY_AFTER_SECONDS,
      detail: `gateway signing keys unavailable: ${(err as Error)?.message ?? String(err)}`,
    });
  }

  function invalidResponse(reason: string): GatehouseError {
    return new ServiceUnavailable('GH_ERR_INTROSPECTION_INVALID_RESPONSE', 'the access token cannot be checked right now', {
      retryAfter: RETRY_AFTER_SECONDS,
      detail: reason,
    });
  }

  async function resolveEndpoint(): Promise<string | undefined> {
    if (endpoint) return endpoint;
    if (now() - lastDiscoveryFailure < DISCOVERY_RETRY_MS) return undefined;
    if (!discovering) {
      discovering = (async () => {
        const fetcher = createFetcher(issuer.tls, config.baseDir);
        try {
          const meta = await fetchDiscovery(issuer, fetcher);
          if (!meta.introspection_endpoint) throw new Error('the discovery document has no introspection_endpoint');
          endpoint = meta.introspection_endpoint;
          discoveryError = undefined;
          return endpoint;
        } catch (err) {
          lastDiscoveryFailure = now();
          discoveryError = (err as Error).message;
          log.warn({ reason: discoveryError }, 'introspection: discovery failed');
          return undefined;
        } finally {
          discovering = null;
          await fetcher.close();
        }
      })();
    }
    return discovering;
  }

  /** One POST to the introspection endpoint; bounded in time and size. */
  async function exchange(url: string, token: string): Promise<Exchange> {
    const form = new URLSearchParams();
    form.set('token', token);
    form.set('token_type_hint', 'access_token');
    const headers: Record<string, string> = { 'content-type': FORM, accept: intro!.accept };
    if (clientAuth.header) headers.authorization = clientAuth.header;
    if (clientAuth.form) for (const [k, v] of clientAuth.form) form.set(k, v);
    if (clientAuth.assertion) {
      form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      form.set('client_assertion', await clientAuth.assertion());
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), intro!.timeout);
    timer.unref();
    try {
      const response = await request(url, {
        method: 'POST',
        dispatcher: agent,
        headers,
        body: form.toString(),
        signal: controller.signal,
        headersTimeout: intro!.timeout,
        bodyTimeout: intro!.timeout,
      });
      const limit = issuer.maxResponseSize;
      const bytes = await readBoundedBody(response.body, response.headers['content-length'], limit);
      if (!Buffer.isBuffer(bytes)) {
        throw new ExchangeFailed(bytes.over === 'declared' ? `response of ${bytes.declared} bytes is over the limit of ${limit}` : `response is over the limit of ${limit} bytes`);
      }
      const type = response.headers['content-type'];
      return {
        status: response.statusCode,
        contentType: ((Array.isArray(type) ? type[0] : type) ?? '').split(';')[0]!.trim().toLowerCase(),
        body: bytes,
      };
    } catch (err) {
      if (err instanceof ExchangeFailed) throw err;
      if (controller.signal.aborted || isOutboundTimeout(err)) throw new ExchangeFailed(`no answer within ${intro!.timeout} ms`, err);
      const e = err as NodeJS.ErrnoException;
      throw new ExchangeFailed(e.code ? `${e.code}: ${e.message}` : e.message, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Introspect, check what does not depend on the request, build the cache entry. */
  async function introspect(token: string, audience: string): Promise<Lookup> {
    const at = now();
    if (at < breakerOpenUntil) return { ok: false, error: unavailable(`introspection failed ${failures} times in a row; waiting before the next try`) };
    const url = await resolveEndpoint();
    if (!url) return { ok: false, error: unavailable(`no introspection endpoint: ${discoveryError ?? 'discovery pending'}`) };
    let reply: Exchange;
    try {
      reply = await exchange(url, token);
    } catch (err) {
      return failed(err instanceof ExchangeFailed ? err.message : String(err), err);
    }
    const outcome = await interpret(reply);
    if (!outcome.ok) {
      if (outcome.error.status >= 500) return failed(outcome.error.detail ?? outcome.error.code, undefined, outcome.error);
      // A definitive answer about the token: the endpoint works.
      succeeded();
      callInactive.inc();
      return outcome;
    }
    succeeded();
    const claims = outcome.value.claims;
    if (outcome.value.active === false) {
      callInactive.inc();
      const checkedAt = now();
      return { ok: true, value: { active: false, expiresAt: checkedAt + Math.min(intro!.negativeCacheTtl, intro!.cacheTtl), checkedAt } };
    }
    callActive.inc();
    const checked = checkClaims(claims!, now());
    if (checked) return { ok: false, error: checked };
    const t = now();
    let expiresAt = t + intro!.cacheTtl;
    if (typeof claims!.exp === 'number') expiresAt = Math.min(expiresAt, claims!.exp * 1000);
    const entry: { active: true; claims: Record<string, unknown>; expiresAt: number; checkedAt: number; upstreamToken?: string; minted: Record<string, { jwt: string; exp: number; kid: string }> } = {
      active: true,
      claims: claims!,
      expiresAt,
      checkedAt: t,
      minted: {},
    };
    if (outcome.value.upstreamToken) {
      entry.upstreamToken = outcome.value.upstreamToken;
    } else {
      let minted: MintedToken;
      try {
        minted = await minter!.mint(claims!, audience, t);
      } catch (err) {
        return { ok: false, error: keysUnavailable(err) };
      }
      // With tokenTtl < cacheTtl the entry outlives this JWT: principalFor re-mints it when it
      // has less than MINT_MARGIN_S left, without a new introspection.
      entry.minted[audience] = minted;
    }
    return { ok: true, value: entry };
  }

  function failed(reason: string, cause?: unknown, error?: GatehouseError): Lookup {
    failures++;
    callFailed.inc();
    lastError = { at: now(), reason };
    if (failures >= BREAKER_THRESHOLD) breakerOpenUntil = now() + BREAKER_OPEN_MS;
    // During an outage every miss fails: one line per 10 s (with the count since) is enough.
    suppressed++;
    if (lastError.at - lastWarned >= 10_000) {
      log.warn({ reason, failures, since: suppressed }, 'introspection failed');
      lastWarned = lastError.at;
      suppressed = 0;
    }
    return { ok: false, error: error ?? unavailable(reason, cause) };
  }

  function succeeded(): void {
    if (failures > 0) log.info({ after: failures }, 'introspection endpoint answers again');
    failures = 0;
    breakerOpenUntil = 0;
    lastSuccess = now();
  }

  /** Turn an HTTP answer into active claims, inactive, or a denial. */
  async function interpret(
    reply: Exchange,
  ): Promise<Result<{ active: boolean; claims?: Record<string, unknown>; upstreamToken?: string }>> {
    const { status, contentType } = reply;
    if (status === 200) {
      if (contentType === 'application/json') {
        const body = parseObject(reply.body);
        if (!body) return { ok: false, error: invalidResponse('the introspection response is not a JSON object') };
        if (body.active === false) return { ok: true, value: { active: false } };
        if (body.active !== true) return { ok: false, error: invalidResponse('the introspection response has no boolean "active"') };
        if (intro!.accept !== 'application/json') {
          return { ok: false, error: invalidResponse(`asked for ${intro!.accept} but the authorization server answered plain JSON`) };
        }
        return { ok: true, value: { active: true, claims: body } };
      }
      if (signed && (contentType === 'application/jwt' || contentType === 'application/token-introspection+jwt') && contentType === intro!.accept) {
        const text = reply.body.toString('utf8').trim();
        if (intro!.accept === 'application/jwt') {
          // The access token in JWT form: verified exactly like any JWT of this issuer.
          const verified = await signed.verifyAccessToken(text);
          if (!verified.ok) return verified;
          return { ok: true, value: { active: true, claims: verified.value, upstreamToken: text } };
        }
        const verified = await signed.verifyIntrospectionResponse(text);
        if (!verified.ok) return verified;
        if (verified.value.active !== true) return { ok: true, value: { active: false } };
        return { ok: true, value: { active: true, claims: verified.value } };
      }
      return { ok: false, error: invalidResponse(`unexpected content type "${contentType}" with status 200`) };
    }
    // Some servers answer 204 for an inactive token when asked for application/jwt.
    if (status === 204 && intro!.accept === 'application/jwt') return { ok: true, value: { active: false } };
    if (status === 400) {
      const body = parseObject(reply.body);
      const error = typeof body?.error === 'string' ? body.error : 'unknown';
      // invalid_client is our misconfiguration; anything else is about the token (e.g. a
      // JWT-shaped string that the server refuses to introspect: unsupported_token_type).
      if (error === 'invalid_client') return { ok: false, error: unavailable('the introspection endpoint refused the gateway client (400 invalid_client)') };
      return { ok: false, error: new InvalidToken('GH_ERR_INTROSPECTION_INACTIVE', 'the access token is not active', { detail: `introspection endpoint answered 400 ${error}` }) };
    }
    if (status === 401 || status === 403) {
      log.error({ status }, 'introspection: the authorization server refused the gateway client credentials');
      return { ok: false, error: unavailable(`the introspection endpoint refused the gateway client (${status})`) };
    }
    if (status >= 500 || status === 429) return { ok: false, error: unavailable(`the introspection endpoint answered ${status}`) };
    return { ok: false, error: invalidResponse(`unexpected status ${status}`) };
  }

  /** RFC 7662 §2.2 members checked like JWT claims. Returns the denial, or null. */
  function checkClaims(claims: Record<string, unknown>, at: number): GatehouseError | null {
    const seconds = at / 1000;
    const deny = (code: GatehouseErrorCode, detail: string) => new InvalidToken(code, 'the access token is not valid', { detail });
    for (const name of ['exp', 'nbf', 'iat'] as const) {
      if (claims[name] !== undefined && (typeof claims[name] !== 'number' || !Number.isFinite(claims[name]))) {
        return deny('GH_ERR_INTROSPECTION_INVALID_RESPONSE', `"${name}" is not a number`);
      }
    }
    if (typeof claims.exp === 'number' && claims.exp <= seconds - skew) return deny('GH_ERR_INTROSPECTION_EXPIRED', 'exp is in the past');
    if (typeof claims.nbf === 'number' && claims.nbf > seconds + skew) return deny('GH_ERR_INTROSPECTION_NOT_YET_VALID', 'nbf is in the future');
    if (typeof claims.iat === 'number' && claims.iat > seconds + skew) return deny('GH_ERR_INTROSPECTION_NOT_YET_VALID', 'iat is in the future');
    if (claims.iss !== undefined && claims.iss !== issuer.issuer) return deny('GH_ERR_INTROSPECTION_ISSUER_INVALID', `iss ${JSON.stringify(claims.iss)} is not ${issuer.issuer}`);
    if (claims.aud !== undefined) {
      const list = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : null;
      if (!list || !list.some((a) => typeof a === 'string' && audiences.has(a))) {
        return deny('GH_ERR_INTROSPECTION_AUDIENCE_INVALID', `aud ${JSON.stringify(claims.aud)} names none of the configured audiences`);
      }
    }
    if (claims.token_type !== undefined) {
      const type = typeof claims.token_type === 'string' ? claims.token_type.toLowerCase() : '';
      // RFC 9449 §6.2: a DPoP-bound token is introspected as token_type DPoP with cnf.jkt.
      if (type === 'dpop' && typeof (claims.cnf as Record<string, unknown> | undefined)?.jkt !== 'string') {
        return deny('GH_ERR_INTROSPECTION_SENDER_CONSTRAINED', 'token_type DPoP without cnf.jkt: the key the token is bound to is unknown');
      }
      if (type !== 'bearer' && type !== 'access_token' && type !== 'dpop') return deny('GH_ERR_INTROSPECTION_TOKEN_TYPE_INVALID', `token_type ${JSON.stringify(claims.token_type)} is not an access token`);
    }
    const unbindable = checkConfirmation(claims.cnf, INTROSPECTION_BINDING_CODES);
    if (unbindable) return unbindable;
    if (claims.scope !== undefined && typeof claims.scope !== 'string') return deny('GH_ERR_INTROSPECTION_INVALID_RESPONSE', 'scope is not a string');
    if (claims.sub !== undefined && typeof claims.sub !== 'string') return deny('GH_ERR_INTROSPECTION_INVALID_RESPONSE', 'sub is not a string');
    return null;
  }

  /** The single-flight miss path: one call per token, shared by every concurrent request. */
  function lookup(key: string, token: string, audience: string): Promise<Lookup> {
    let pending = inflight.get(key);
    if (!pending) {
      if (inflight.size >= MAX_IN_FLIGHT) {
        return Promise.resolve({ ok: false, error: unavailable(`${MAX_IN_FLIGHT} introspection calls already in flight`) });
      }
      pending = (async (): Promise<Lookup> => {
        try {
          const cached = cache ? await cache.get(key, token, now()) : undefined;
          if (cached) return { ok: true, value: cached };
          cacheMiss.inc();
          const result = await introspect(token, audience);
          if (cache) {
            if (result.ok) await cache.set(key, token, result.value, now());
            else if (result.error.status === 401) {
              // A definitive refusal (inactive, expired, wrong audience): short negative entry.
              const code = result.error.code === 'GH_ERR_INTROSPECTION_INACTIVE' ? undefined : result.error.code;
              const checkedAt = now();
              const expiresAt = checkedAt + Math.min(intro!.negativeCacheTtl, intro!.cacheTtl);
              await cache.set(key, token, code ? { active: false, expiresAt, checkedAt, code } : { active: false, expiresAt, checkedAt }, checkedAt);
            }
          }
          return result;
        } finally {
          inflight.delete(key);
        }
      })();
      inflight.set(key, pending);
    }
    return pending;
  }

  /**
   * A minted JWT can be forwarded while it has time left and this gateway publishes its key
   * (an entry from the shared cache may carry a JWT another instance signed). Hot path.
   */
  function fresh(minted: { exp: number; kid: string } | undefined, at: number): boolean {
    return keys !== null && minted !== undefined && minted.exp - MINT_MARGIN_S > at / 1000 && keys.publishes(minted.kid, at);
  }

  /** Build (or reuse) the outcome for an active entry and a route's audience. */
  async function principalFor(entry: IntrospectionEntry & { active: true }, key: string, token: string, audience: string): Promise<AuthOutcome> {
    let byAudience = principals.get(entry);
    const known = byAudience?.get(audience);
    const at = now();
    if (known && (entry.upstreamToken || fresh(entry.minted[audience], at))) return known;
    let upstreamToken = entry.upstreamToken;
    if (!upstreamToken) {
      let minted = entry.minted[audience];
      if (!minted || !fresh(minted, at)) {
        minted = await minter!.mint(entry.claims, audience, at);
        entry.minted[audience] = minted;
        if (cache) await cache.set(key, token, entry, at);
      }
      upstreamToken = minted.jwt;
    }
    const principal: Principal = {
      issuer: issuer.name,
      subject: typeof entry.claims.sub === 'string' ? entry.claims.sub : typeof entry.claims.client_id === 'string' ? entry.claims.client_id : undefined,
      claims: entry.claims,
      scopes: scopesOf(entry.claims),
      kind: 'introspection',
      upstreamToken,
      upstreamAuthorization: bearerAuthorization(upstreamToken),
    };
    if (!byAudience) {
      byAudience = new Map();
      principals.set(entry, byAudience);
    }
    const built = Object.freeze({ kind: 'principal' as const, principal });
    byAudience.set(audience, built);
    return built;
  }

  function outcome(entry: IntrospectionEntry, key: string, token: string, ctx: RequestContext, audience: string, at: number): AuthOutcome | Promise<AuthOutcome> {
    if (!entry.active) return entry.code === undefined ? inactiveOutcome : cachedRefusal(entry.code);
    // RFC 8705 §3: a certificate-bound token is only good with that certificate, on every
    // request (cache hits included). Hot path: one property read for an unbound token.
    const cnf = entry.claims.cnf;
    if (cnf !== undefined || ctx.tokenScheme === 'DPoP') {
      const mismatch = checkSender(cnf, ctx, token, INTROSPECTION_BINDING_CODES, dpop);
      if (mismatch instanceof Promise) {
        return mismatch.then((error) => (error ? ({ kind: 'denied', error } as AuthOutcome) : admitted(entry, key, token, audience, at)));
      }
      if (mismatch) return { kind: 'denied', error: mismatch };
    }
    return admitted(entry, key, token, audience, at);
  }

  /** The principal of an entry whose sender checks passed. */
  function admitted(entry: Extract<IntrospectionEntry, { active: true }>, key: string, token: string, audience: string, at: number): AuthOutcome | Promise<AuthOutcome> {
    const byAudience = principals.get(entry);
    const known = byAudience?.get(audience);
    // Hot path: a warm entry whose JWT is still fresh answers synchronously, allocating nothing.
    if (known && (entry.upstreamToken || fresh(entry.minted[audience], at))) return known;
    return principalFor(entry, key, token, audience).catch((err: unknown) => ({ kind: 'denied', error: keysUnavailable(err) }) as AuthOutcome);
  }

  return {
    name: `introspection:${issuer.name}`,
    authenticate(token: string, ctx: RequestContext): AuthOutcome | Promise<AuthOutcome> {
      if (token.length > issuer.maxTokenSize || !B64TOKEN.test(token)) {
        return { kind: 'denied', error: new InvalidToken('GH_ERR_INTROSPECTION_TOKEN_MALFORMED', 'the access token is malformed', { detail: token.length > issuer.maxTokenSize ? `token of ${token.length} bytes is over ${issuer.maxTokenSize}` : 'not RFC 6750 b64token syntax' }) };
      }
      const audience = (ctx.route && audienceFor.get(ctx.route.config.upstream)) ?? defaultAudience;
      const key = tokenKey(token);
      // One clock read serves the cache and the freshness of the minted JWT (hot path).
      const at = now();
      const hit = cache?.peek(key, at);
      if (hit) {
        cacheHit.inc();
        return outcome(hit, key, token, ctx, audience, at);
      }
      return lookup(key, token, audience).then((result) => {
        // The runner writes the denial (code and detail) to the access log.
        if (!result.ok) return { kind: 'denied', error: result.error } as AuthOutcome;
        return outcome(result.value, key, token, ctx, audience, now());
      });
    },
    async start() {
      await Promise.all([
        // A key problem is logged and shown on /readyz; it must not stop the gateway from starting.
        keys?.ready().catch((err: Error) => log.error({ err: err.message }, 'introspection: gateway signing keys unavailable')),
        intro.endpoint ? undefined : resolveEndpoint(),
        signed?.start(),
        cache?.start(),
      ]);
    },
    readiness(): Readiness {
      const details: Record<string, unknown> = {
        endpoint: endpoint ?? `not discovered${discoveryError ? `: ${discoveryError}` : ''}`,
        cachedEntries: cache?.size ?? 0,
      };
      if (lastError) details.lastError = `${Math.round((now() - lastError.at) / 1000)}s ago: ${lastError.reason}`;
      if (failures > 0) details.consecutiveFailures = failures;
      if (lastSuccess) details.lastSuccess = `${Math.round((now() - lastSuccess) / 1000)}s ago`;
      const signedReadiness = signed?.readiness();
      if (signedReadiness?.details) details.keys = signedReadiness.details;
      const keysReady = !keys || keys.loaded;
      if (!keysReady) details.gatewayKeys = 'not loaded';
      return { ready: endpoint !== undefined && keysReady && (signedReadiness?.ready ?? true), details };
    },
    async close() {
      if (closed) return;
      closed = true;
      keys?.release();
      await Promise.allSettled([agent.close(), cache?.release(), signed?.close(), dpopHold.release()]);
    },
  };
}

/** The exchange with the endpoint failed (connection, timeout, size): the reason goes to the log. */
class ExchangeFailed extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

function parseObject(body: Buffer): Record<string, unknown> | null {
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

interface ClientAuth {
  /** The credential as bytes: keys the sealing of shared-cache values (never stored there). */
  secret: Uint8Array;
  header?: string;
  form?: [string, string][];
  assertion?: () => Promise<string>;
}

/**
 * RFC 6749 §2.3.1: for client_secret_basic the id and secret are form-urlencoded before they
 * are joined and base64-encoded (a secret with `:` or `%` must survive the trip).
 *
 * @example
 * ```ts
 * basicCredentials('gateway', 'p:ss'); // 'Basic ' + base64('gateway:p%3Ass')
 * ```
 */
export function basicCredentials(clientId: string, clientSecret: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+').replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

function buildClientAuth(issuer: IssuerConfig, intro: IntrospectionConfig, baseDir: string): ClientAuth {
  const secretOf = (material: string | Buffer) => createHash('sha256').update('gatehouse cache secret\0').update(intro.clientId).update('\0').update(material).digest();
  if (intro.authMethod === 'client_secret_post') {
    return { secret: secretOf(intro.clientSecret ?? ''), form: [['client_id', intro.clientId], ['client_secret', intro.clientSecret ?? '']] };
  }
  if (intro.authMethod === 'client_secret_basic') return { secret: secretOf(intro.clientSecret ?? ''), header: basicCredentials(intro.clientId, intro.clientSecret ?? '') };
  const { key, alg, kid } = loadClientKey(intro.privateKey ?? '', baseDir);
  return {
    secret: secretOf(key.export({ format: 'der', type: 'pkcs8' })),
    form: [['client_id', intro.clientId]],
    // RFC 7523 §3: iss = sub = client_id, aud = the authorization server's issuer identifier.
    assertion: () =>
      new SignJWT({})
        .setProtectedHeader(kid ? { alg, kid } : { alg })
        .setIssuer(intro.clientId)
        .setSubject(intro.clientId)
        .setAudience(issuer.issuer)
        .setIssuedAt()
        .setExpirationTime('60s')
        .setJti(randomBytes(16).toString('base64url'))
        .sign(key),
  };
}

/** `privateKey`: inline JWK JSON, or a file (PEM or JWK) relative to the config file. */
function loadClientKey(value: string, baseDir: string): { key: KeyObject; alg: string; kid: string | undefined } {
  const inline = value.trimStart().startsWith('{');
  const where = inline ? 'privateKey (inline JWK)' : `privateKey ${path.resolve(baseDir, value)}`;
  let text: string;
  try {
    text = inline ? value : readFileSync(path.resolve(baseDir, value), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${where} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`}`);
  }
  let jwk: Record<string, unknown> | undefined;
  let key: KeyObject;
  try {
    if (text.trimStart().startsWith('{')) {
      jwk = JSON.parse(text) as Record<string, unknown>;
      key = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } else {
      key = createPrivateKey(text);
    }
  } catch (err) {
    throw new Error(`${where} is not a private key in PEM or JWK form (${(err as Error).message.split('\n')[0]})`);
  }
  let alg = typeof jwk?.alg === 'string' ? jwk.alg : undefined;
  if (!alg) {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    alg =
      key.asymmetricKeyType === 'ec'
        ? curve === 'secp384r1'
          ? 'ES384'
          : curve === 'secp521r1'
            ? 'ES512'
            : 'ES256'
        : key.asymmetricKeyType === 'ed25519'
          ? 'EdDSA'
          : 'RS256';
  }
  return { key, alg, kid: typeof jwk?.kid === 'string' ? jwk.kid : undefined };
}
