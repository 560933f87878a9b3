import type { GatehouseConfig, IssuerConfig, RouteConfig } from '../config/types.js';
import { InvalidToken, MissingToken, type ConfigIssue, type GatehouseError } from '../errors.js';
import type { Authenticator, AuthOutcome, Principal, RequestContext, Stage } from '../pipeline/context.js';
import type { AreaFactory, AreaRuntime, GatewayServices, Readiness, RouteStages } from '../pipeline/runtime.js';
import { configIssue } from '../config/issue.js';
import { bearerCredential, bearerSyntaxError } from './bearer.js';
import { checkSender } from './binding.js';
import { acquireDpopChecker, type DpopChecker } from './dpop.js';
import { createFetcher, type JsonFetcher } from './fetch.js';
import { createJwtVerifier, JWT_BINDING_CODES, MAX_TOKEN_SIZE_CEILING, parseJwt, type JwtVerifier, type ParsedJwt } from './jwt.js';
import { TokenCache } from './token-cache.js';

/** An opaque-token authenticator with its lifecycle (introspection, phantom token). */
export type OpaqueAuthenticator = Authenticator & {
  start?(): Promise<void>;
  close?(): Promise<void>;
  readiness?(): Readiness;
};

/** Builds the authenticator of an issuer with `introspection` (src/authn/introspection.ts). */
export type OpaqueAuthenticatorFactory = (issuer: IssuerConfig, config: GatehouseConfig, services: GatewayServices) => OpaqueAuthenticator;

/**
 * Where the opaque-token authenticator comes from: RFC 7662 introspection with the phantom-token
 * swap (src/authn/introspection.ts), loaded by the first config with an introspected issuer
 * (`undefined` here; it brings jose). Replaceable for tests or other builds.
 */
let opaqueFactory: OpaqueAuthenticatorFactory | null | undefined;

/**
 * Replace the opaque-token authenticator factory (tests, other builds); `null` makes an issuer
 * with `introspection` a config error, `undefined` restores the built-in.
 *
 * @example
 * ```ts
 * useOpaqueAuthenticator(null); // introspected issuers are refused
 * useOpaqueAuthenticator(undefined); // RFC 7662 introspection again
 * ```
 */
export function useOpaqueAuthenticator(factory: OpaqueAuthenticatorFactory | null | undefined): void {
  opaqueFactory = factory;
}

/**
 * Whether some issuer of the config is an opaque-token (introspected) issuer: what decides that
 * the introspection authenticator and the phantom-token area (and jose with them) are loaded.
 *
 * @example
 * ```ts
 * if (introspectsAny(config)) await import('./introspection.js');
 * ```
 */
export function introspectsAny(config: GatehouseConfig): boolean {
  return config.issuers.some((issuer) => issuer.introspection !== undefined);
}

/** The opaque-token authenticator factory for this config: the one set, else the built-in when an issuer needs it. */
async function opaqueAuthenticatorFactory(config: GatehouseConfig): Promise<OpaqueAuthenticatorFactory | null> {
  if (opaqueFactory !== undefined) return opaqueFactory;
  if (!introspectsAny(config)) return null;
  return (await import('./introspection.js')).createIntrospectionAuthenticator;
}

/**
 * Authentication: finds the bearer token and validates it on every protected request.
 *
 * Issuer model: an issuer WITH `introspection` is an opaque-token issuer; one WITHOUT is a JWT
 * issuer. Per route the accepted issuers are `route.issuers ?? all`. A JWT-shaped token whose
 * (unverified) `iss` equals an accepted JWT issuer is validated as a JWT, and that answer is
 * final. Otherwise, when the route accepts opaque issuers, their authenticators try in order.
 * Otherwise 401 `invalid_token`; an unknown `iss` is refused before any key is used.
 *
 * Hot path: one shared verified-token cache; a hit costs one Map lookup and two comparisons,
 * plus the certificate check of a sender-constrained token (`cnf`), never skipped on a hit.
 *
 * @example
 * ```ts
 * const area = await createAuthnArea(config, services);
 * const stages = area.stagesFor!(config.routes[0]!, 0);
 * ```
 */
export const createAuthnArea: AreaFactory = async (config, services) => {
  const issues: ConfigIssue[] = [];
  const makeOpaque = await opaqueAuthenticatorFactory(config);
  const cacheKey = config.tokenCache.enabled ? tokenCacheKey(config) : null;
  const cache = cacheKey === null ? null : acquireTokenCache(cacheKey, config.tokenCache.maxEntries);
  let released = false;
  const verifiers = new Map<string, JwtVerifier>();
  const opaque = new Map<string, OpaqueAuthenticator>();
  const fetchers: JsonFetcher[] = [];
  const issByName = new Map<string, string>();
  const dpopHold = acquireDpopChecker(config, services.now, services.log);
  const dpop = dpopHold.checker;

  config.issuers.forEach((issuer, i) => {
    if (issuer.introspection) {
      if (!makeOpaque) {
        issues.push(configIssue(config, ['issuers', i, 'introspection'], 'is not supported by this build (no opaque-token authenticator)'));
        return;
      }
      try {
        opaque.set(issuer.name, makeOpaque(issuer, config, services));
      } catch (err) {
        issues.push(configIssue(config, ['issuers', i, 'introspection'], `cannot be set up: ${(err as Error).message}`));
      }
      return;
    }
    const sameIss = [...issByName.entries()].find(([, iss]) => iss === issuer.issuer);
    if (sameIss) {
      issues.push(configIssue(config, ['issuers', i, 'issuer'], `is also the issuer of "${sameIss[0]}": a token's iss must choose exactly one issuer`));
      return;
    }
    issByName.set(issuer.name, issuer.issuer);
    let fetcher: JsonFetcher;
    try {
      fetcher = createFetcher(issuer.tls, config.baseDir);
    } catch (err) {
      issues.push(configIssue(config, ['issuers', i, 'tls'], `cannot be read: ${(err as Error).message}`));
      return;
    }
    fetchers.push(fetcher);
    verifiers.set(issuer.name, createJwtVerifier(issuer, services, { cache, fetcher, baseDir: config.baseDir }));
  });

  const runtime: AreaRuntime = {
    name: 'authn',
    issues,
    stagesFor(route: RouteConfig): RouteStages {
      if (route.public) return {};
      return {
        credential: route.auth === 'cookie-only' ? null : bearerCredential,
        authenticate: authenticateStage(route, config, verifiers, opaque, cache, services, dpop),
      };
    },
    async start() {
      await Promise.all([...[...verifiers.values()].map((v) => v.start()), ...[...opaque.values()].map((a) => a.start?.())]);
    },
    readiness() {
      let ready = true;
      const issuers: Record<string, unknown> = {};
      for (const [name, v] of verifiers) {
        const r = v.readiness();
        if (!r.ready) ready = false;
        issuers[name] = r.details ?? {};
      }
      for (const [name, a] of opaque) {
        const r = a.readiness?.();
        if (!r) continue;
        if (!r.ready) ready = false;
        issuers[name] = r.details ?? {};
      }
      return { ready, details: { issuers } };
    },
    async close() {
      if (cacheKey !== null && !released) {
        released = true;
        releaseTokenCache(cacheKey);
      }
      await Promise.allSettled([dpopHold.release(), ...[...verifiers.values()].map((v) => v.close()), ...[...opaque.values()].map((a) => a.close?.()), ...fetchers.map((f) => f.close())]);
    },
  };
  return runtime;
};

/**
 * Verified-token caches of live areas, by everything that decides what an entry means (the JWT
 * issuers' settings and the cache size). A reload with the same issuers reuses the running
 * plan's cache, so it does not start cold; any change to an issuer starts a fresh one.
 */
const liveCaches = new Map<string, { cache: TokenCache; users: number }>();

function tokenCacheKey(config: GatehouseConfig): string {
  return JSON.stringify([config.baseDir, config.tokenCache.maxEntries, config.issuers.filter((i) => !i.introspection)]);
}

function acquireTokenCache(key: string, maxEntries: number): TokenCache {
  const found = liveCaches.get(key);
  if (found) {
    found.users++;
    return found.cache;
  }
  const cache = new TokenCache(maxEntries);
  liveCaches.set(key, { cache, users: 1 });
  return cache;
}

function releaseTokenCache(key: string): void {
  const found = liveCaches.get(key);
  if (found && --found.users === 0) liveCaches.delete(key);
}

/**
 * Admit a verified JWT for this request: `ctx.principal` is set, unless the token is bound to a
 * client certificate (RFC 8705 `cnf.x5t#S256`) this connection did not present, or to a DPoP
 * key (RFC 9449 `cnf.jkt`) without a valid proof for this request, or came in the DPoP scheme
 * unbound. Runs on every acceptance, cache hits included (the cached principal keeps the
 * verified `cnf`). Hot path: a bearer token without `cnf` costs two property reads.
 */
function admitJwt(principal: Principal, ctx: RequestContext, dpop: DpopChecker): GatehouseError | null | Promise<GatehouseError | null> {
  const cnf = principal.claims.cnf;
  if (cnf !== undefined || ctx.tokenScheme === 'DPoP') {
    const denial = checkSender(cnf, ctx, ctx.token!, JWT_BINDING_CODES, dpop);
    if (denial instanceof Promise) return admitLater(principal, ctx, denial);
    if (denial !== null) return denial;
  }
  ctx.principal = principal;
  return null;
}

async function admitLater(principal: Principal, ctx: RequestContext, pending: Promise<GatehouseError | null>): Promise<GatehouseError | null> {
  const denial = await pending;
  if (denial !== null) return denial;
  ctx.principal = principal;
  return null;
}

/**
 * The authenticate stage of one route, built once at compile time. Hot path.
 */
function authenticateStage(
  route: RouteConfig,
  config: GatehouseConfig,
  verifiers: ReadonlyMap<string, JwtVerifier>,
  opaque: ReadonlyMap<string, OpaqueAuthenticator>,
  cache: TokenCache | null,
  services: GatewayServices,
  dpop: DpopChecker,
): Stage {
  const acceptedNames = new Set(route.issuers ?? config.issuers.map((i) => i.name));
  const acceptedJwt = new Map<string, JwtVerifier>(); // iss → verifier
  const otherJwt = new Map<string, string>(); // iss → issuer name, for a precise denial
  for (const [name, v] of verifiers) {
    if (acceptedNames.has(name)) acceptedJwt.set(v.issuer.issuer, v);
    else otherJwt.set(v.issuer.issuer, name);
  }
  const opaqueAuthenticators: OpaqueAuthenticator[] = [];
  for (const [name, a] of opaque) if (acceptedNames.has(name)) opaqueAuthenticators.push(a);
  let maxSize = 0;
  for (const v of acceptedJwt.values()) maxSize = Math.max(maxSize, v.issuer.maxTokenSize);
  maxSize = Math.min(maxSize || MAX_TOKEN_SIZE_CEILING, MAX_TOKEN_SIZE_CEILING);

  async function viaOpaque(token: string, ctx: RequestContext, fallback: GatehouseError): Promise<GatehouseError | null> {
    for (let i = 0; i < opaqueAuthenticators.length; i++) {
      const outcome = await opaqueAuthenticators[i]!.authenticate(token, ctx);
      if (outcome.kind === 'principal') {
        ctx.principal = outcome.principal;
        return null;
      }
      if (outcome.kind === 'denied') return outcome.error;
    }
    return fallback;
  }

  /** The one opaque authenticator answered later: apply its outcome (not-applicable → `denial`). */
  async function finishOpaque(pending: Promise<AuthOutcome>, ctx: RequestContext, token: string): Promise<GatehouseError | null> {
    const outcome = await pending;
    if (outcome.kind === 'principal') {
      ctx.principal = outcome.principal;
      return null;
    }
    if (outcome.kind === 'denied') return outcome.error;
    const parsed = parseJwt(token, maxSize);
    return parsed.ok ? new InvalidToken('GH_ERR_JWT_ISSUER_UNKNOWN', 'the access token is from an unknown issuer') : parsed.error;
  }

  async function finishAsync(verifier: JwtVerifier, parsed: ParsedJwt, ctx: RequestContext): Promise<GatehouseError | null> {
    const result = await verifier.verifyParsed(parsed);
    if (!result.ok) return result.error;
    return admitJwt(result.value.principal, ctx, dpop);
  }

  return function authenticate(ctx: RequestContext): GatehouseError | null | Promise<GatehouseError | null> {
    const token = ctx.token;
    if (token === null) return new MissingToken('an access token is required', { detail: 'no bearer token was sent' });
    const now = services.now();
    if (cache !== null) {
      const hit = cache.get(token, now);
      if (hit !== undefined && acceptedNames.has(hit.issuer)) return admitJwt(hit.principal, ctx, dpop);
    }
    // The b64token syntax (400) is judged before anything else reads the token, but a JWT that
    // parses is a b64token already (base64url and '.' only): a token with a '.' is parsed first
    // and its syntax checked only when it fails, so a good JWT is walked once, not twice.
    const dotted = token.indexOf('.') !== -1;
    if (!dotted) {
      const malformed = bearerSyntaxError(token, ctx.tokenSource, ctx.tokenScheme);
      if (malformed !== null) return malformed;
      // Hot path of a phantom-token route: a string without '.' is no JWT, so skip parseJwt
      // (whose refusal allocates an Error, ~6 µs) and, when the authenticator answers from its
      // cache synchronously, the promise too.
      if (opaqueAuthenticators.length === 1) {
        const outcome = opaqueAuthenticators[0]!.authenticate(token, ctx);
        if (outcome instanceof Promise) return finishOpaque(outcome, ctx, token);
        if (outcome.kind === 'principal') {
          ctx.principal = outcome.principal;
          return null;
        }
        if (outcome.kind === 'denied') return outcome.error;
      }
    }
    const parsed = parseJwt(token, maxSize);
    if (!parsed.ok && dotted) {
      const malformed = bearerSyntaxError(token, ctx.tokenSource, ctx.tokenScheme);
      if (malformed !== null) return malformed;
    }
    let denial: GatehouseError;
    if (parsed.ok) {
      const iss = parsed.value.claims.iss;
      const verifier = typeof iss === 'string' ? acceptedJwt.get(iss) : undefined;
      if (verifier !== undefined) {
        const result = verifier.tryVerifyParsed(parsed.value, now);
        if (result === undefined) return finishAsync(verifier, parsed.value, ctx);
        if (!result.ok) return result.error;
        return admitJwt(result.value.principal, ctx, dpop);
      }
      const other = typeof iss === 'string' ? otherJwt.get(iss) : undefined;
      denial =
        other !== undefined
          ? new InvalidToken('GH_ERR_JWT_ISSUER_NOT_ACCEPTED', 'the access token is from an issuer this route does not accept', {
              detail: `issuer ${other} is not in the issuers of route ${route.name}`,
            })
          : new InvalidToken('GH_ERR_JWT_ISSUER_UNKNOWN', 'the access token is from an unknown issuer', {
              detail: `iss ${JSON.stringify(iss)} is not a configured JWT issuer`,
            });
    } else {
      denial = parsed.error;
    }
    if (opaqueAuthenticators.length > 0) return viaOpaque(token, ctx, denial);
    return denial;
  };
}
