import { isIPv4 } from 'node:net';
import type { ConfigIssue } from '../errors.js';
import { checkDurations, parseDuration, parseSize } from './units.js';
import { normalizeTokenHandler } from './normalize-token-handler.js';
import { checkAddressRange } from '../server/addresses.js';
import { checkTrustedProxy } from '../server/trusted-proxy.js';
import { checkHeaderRules, mergeHeaderRules } from './header-rules.js';
import { normalizeParams, normalizeQuery, normalizeRequestBody, normalizeRequestHeaders, normalizeResponseBody } from './request-body.js';
import { WHOLE_ANSWER_HEADERS } from '../validate/response-body.js';
import { checkRouteHost } from '../route/hosts.js';
import { keyNeedsPrincipal, parseKeySpec } from '../limit/key.js';
import type {
  AuthFailureLimitConfig,
  CorsConfig,
  GatehouseConfig,
  IssuerConfig,
  ListenerConfig,
  PreAuthLimitConfig,
  QuotaConfig,
  RateLimitConfig,
  RouteConfig,
  UpstreamConfig,
  WebSocketConfig,
} from './types.js';
import type { Locator } from './load.js';
import { FORWARDED_HEADERS } from './types.js';

type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface NormalizeContext {
  file: string;
  baseDir: string;
  locate: Locator;
}

/** Defaults that a config may override; documented in docs/configuration.md. */
export const DEFAULTS = {
  listenHost: '127.0.0.1',
  limits: {
    maxBodySize: 1024 * 1024,
    maxHeaderSize: 16 * 1024,
    headersTimeout: 10_000,
    requestTimeout: 30_000,
    keepAliveTimeout: 5_000,
    maxConnections: 10_000,
    upstreamTimeout: 30_000,
    shutdownTimeout: 10_000,
    workerUnresponsiveTimeout: 30_000,
  },
  issuer: {
    algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    clockSkew: 60_000,
    maxTokenSize: 8 * 1024,
    jwksRefresh: 5 * 60_000,
    jwksCooldown: 30_000,
    fetchTimeout: 5_000,
    maxResponseSize: 512 * 1024,
  },
  dpop: { algorithms: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'], proofMaxAge: 60_000, clockSkew: 5_000, maxProofs: 200_000 },
  introspection: { cacheTtl: 60_000, negativeCacheTtl: 5_000, timeout: 5_000 },
  upstream: {
    connectTimeout: 5_000,
    connections: 128,
    keepAliveTimeout: 4_000,
    downFor: 10_000,
    healthCheck: { interval: 10_000, timeout: 2_000, unhealthyAfter: 2, healthyAfter: 2 },
  },
  websocket: { idleTimeout: 5 * 60_000, maxDuration: 24 * 3_600_000, closeAtTokenExpiry: true, maxConnections: 1000, maxConnectionsPerClient: 50, maxMessageSize: 1024 * 1024 },
} as const;

const LOOPBACK_HOSTS = new Set(['localhost', '[::1]', '::1']);

/** A loopback host or bind address: `localhost`, `::1` (bracketed or not), or a literal IPv4 address in 127.0.0.0/8 — not a name like `127.example.com`. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || (isIPv4(host) && host.startsWith('127.'));
}

/**
 * https, or http on a loopback host (development and tests): `localhost`, `[::1]`, or a literal
 * IPv4 address in 127.0.0.0/8. Not any name that starts with `127.` (`127.attacker.example`).
 */
export function isSecureOrLoopbackUrl(value: string): boolean {
  try {
    const url = new URL(value);
    if (url.protocol === 'https:') return true;
    if (url.protocol !== 'http:') return false;
    return isLoopbackHost(url.hostname); // WHATWG-normalized: 127.1 and 0x7f.1 are 127.0.0.1 here
  } catch {
    return false;
  }
}

/**
 * A browser origin as configured (`tokenHandler.trustedOrigins`, `cors.origins`): its
 * normalized form, or why it is not one.
 *
 * @example
 * ```ts
 * checkOrigin('https://App.example.com/'); // { origin: 'https://app.example.com' }
 * checkOrigin('https://app.example.com/x'); // { problem: 'must be an origin only (…), e.g. https://app.example.com' }
 * ```
 */
export function checkOrigin(value: string): { origin: string; problem?: undefined } | { problem: string } {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    return { problem: 'is not a valid origin (scheme://host[:port])' };
  }
  if (parsed.origin !== value.replace(/\/$/, '').toLowerCase()) {
    return { problem: `must be an origin only (scheme://host[:port], no path), e.g. ${parsed.origin}` };
  }
  if (!isSecureOrLoopbackUrl(value)) return { problem: 'must be https (http only on loopback hosts)' };
  return { origin: parsed.origin };
}

/** `cors`: origins checked and normalized, header names lowercased. */
function normalizeCors(raw: Raw | undefined, ms: (value: unknown, fallback: number) => number, bad: (keyPath: (string | number)[], message: string) => void): CorsConfig | undefined {
  if (raw === undefined) return undefined;
  const listed: string[] = raw.origins ?? [];
  const anyOrigin = listed.includes('*');
  const origins: string[] = [];
  listed.forEach((value, i) => {
    if (value === '*') {
      if (listed.length > 1) bad(['cors', 'origins', i], '"*" (any origin) stands alone; list origins or use "*"');
      return;
    }
    const checked = checkOrigin(value);
    if (checked.problem !== undefined) bad(['cors', 'origins', i], checked.problem);
    else origins.push(checked.origin);
  });
  const lower = (names: string[] | undefined) => (names ?? []).map((n) => n.toLowerCase());
  return {
    origins,
    anyOrigin,
    allowHeaders: raw.allowHeaders === undefined ? null : [...new Set(['authorization', 'content-type', ...lower(raw.allowHeaders)])],
    exposeHeaders: lower(raw.exposeHeaders),
    maxAge: ms(raw.maxAge, 600_000),
  };
}

/** Apply defaults and units, then check what a schema cannot: names, references, URLs. */
export function normalizeConfig(raw: Raw, ctx: NormalizeContext): { config: GatehouseConfig; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const bad = (keyPath: (string | number)[], message: string, onKey = false) => issues.push(ctx.locate(keyPath, message, onKey));
  // Every duration in range for its key (units.ts DURATION_RANGES): 0 that turns a timeout off, or
  // more than a timer holds, is refused here once, whatever reads the value later.
  checkDurations(raw, bad);
  const ms = (value: unknown, fallback: number) => (value === undefined ? fallback : parseDuration(value as string | number));
  const bytes = (value: unknown, fallback: number) => (value === undefined ? fallback : parseSize(value as string | number));

  const rawListen: Raw[] = Array.isArray(raw.listen) ? raw.listen : [raw.listen];
  const listen: ListenerConfig[] = rawListen.map((l, i) => ({
    ...l,
    name: l.name ?? (l.tls ? `https-${i}` : `http-${i}`),
    host: l.host ?? DEFAULTS.listenHost,
    port: l.port,
    tls: l.tls
      ? {
          ...l.tls,
          hsts: l.tls.hsts ? { ...l.tls.hsts, maxAge: l.tls.hsts.maxAge === undefined ? undefined : ms(l.tls.hsts.maxAge, 0) } : undefined,
          reload: l.tls.reload ? { ...l.tls.reload, debounce: l.tls.reload.debounce === undefined ? undefined : ms(l.tls.reload.debounce, 0) } : undefined,
        }
      : undefined,
  }));
  uniqueNames(listen, 'listen', Array.isArray(raw.listen), bad);

  const limits = {
    maxBodySize: bytes(raw.limits?.maxBodySize, DEFAULTS.limits.maxBodySize),
    maxHeaderSize: bytes(raw.limits?.maxHeaderSize, DEFAULTS.limits.maxHeaderSize),
    headersTimeout: ms(raw.limits?.headersTimeout, DEFAULTS.limits.headersTimeout),
    requestTimeout: ms(raw.limits?.requestTimeout, DEFAULTS.limits.requestTimeout),
    keepAliveTimeout: ms(raw.limits?.keepAliveTimeout, DEFAULTS.limits.keepAliveTimeout),
    maxConnections: raw.limits?.maxConnections ?? DEFAULTS.limits.maxConnections,
    upstreamTimeout: ms(raw.limits?.upstreamTimeout, DEFAULTS.limits.upstreamTimeout),
    shutdownTimeout: ms(raw.limits?.shutdownTimeout, DEFAULTS.limits.shutdownTimeout),
    workerUnresponsiveTimeout: ms(raw.limits?.workerUnresponsiveTimeout, DEFAULTS.limits.workerUnresponsiveTimeout),
  };

  const issuers: IssuerConfig[] = (raw.issuers ?? []).map((r: Raw, i: number) => {
    const introspection = r.introspection as Raw | undefined;
    const out: IssuerConfig = {
      name: r.name,
      issuer: r.issuer,
      jwksUri: r.jwksUri,
      discovery: r.discovery ?? false,
      audiences: r.audiences ?? [],
      algorithms: r.algorithms ?? [...DEFAULTS.issuer.algorithms],
      clockSkew: ms(r.clockSkew, DEFAULTS.issuer.clockSkew),
      requireTyp: r.requireTyp,
      maxTokenAge: r.maxTokenAge === undefined ? undefined : ms(r.maxTokenAge, 0),
      requiredClaims: r.requiredClaims ?? [],
      maxTokenSize: bytes(r.maxTokenSize, DEFAULTS.issuer.maxTokenSize),
      jwksRefresh: ms(r.jwksRefresh, DEFAULTS.issuer.jwksRefresh),
      jwksCooldown: ms(r.jwksCooldown, DEFAULTS.issuer.jwksCooldown),
      fetchTimeout: ms(r.fetchTimeout, DEFAULTS.issuer.fetchTimeout),
      maxResponseSize: bytes(r.maxResponseSize, DEFAULTS.issuer.maxResponseSize),
      tls: r.tls,
      introspection: introspection
        ? {
            endpoint: introspection.endpoint,
            clientId: introspection.clientId,
            clientSecret: introspection.clientSecret,
            authMethod: introspection.authMethod ?? 'client_secret_basic',
            privateKey: introspection.privateKey,
            accept: introspection.accept ?? 'application/json',
            cacheTtl: ms(introspection.cacheTtl, DEFAULTS.introspection.cacheTtl),
            negativeCacheTtl: ms(introspection.negativeCacheTtl, DEFAULTS.introspection.negativeCacheTtl),
            timeout: ms(introspection.timeout, DEFAULTS.introspection.timeout),
            audience: introspection.audience,
          }
        : undefined,
    };
    const at = ['issuers', i];
    if (out.jwksUri && out.discovery) bad([...at, 'jwksUri'], 'cannot be combined with discovery: true (choose one source of keys)');
    if (!out.jwksUri && !out.discovery && !out.introspection) {
      bad(at, 'needs a source of keys: jwksUri, discovery: true, or introspection for opaque tokens');
    }
    if (out.jwksUri && !isSecureOrLoopbackUrl(out.jwksUri)) bad([...at, 'jwksUri'], 'must be an https URL (http only on loopback hosts)');
    if (out.discovery && !isSecureOrLoopbackUrl(out.issuer)) bad([...at, 'issuer'], 'must be an https URL for discovery (http only on loopback hosts)');
    if (out.audiences.length === 0) bad(at, 'is missing the required key "audiences" (the aud values a token must carry for these APIs)');
    if (out.introspection) {
      const intro = out.introspection;
      if (!intro.endpoint && !out.discovery) bad([...at, 'introspection'], 'needs an endpoint, or discovery: true on the issuer');
      if (intro.endpoint && !isSecureOrLoopbackUrl(intro.endpoint)) bad([...at, 'introspection', 'endpoint'], 'must be an https URL (http only on loopback hosts)');
      if (intro.authMethod === 'private_key_jwt' ? !intro.privateKey : !intro.clientSecret) {
        bad([...at, 'introspection'], intro.authMethod === 'private_key_jwt' ? 'needs privateKey for private_key_jwt' : 'needs clientSecret');
      }
    }
    return out;
  });
  uniqueNames(issuers, 'issuers', true, bad);

  const upstreams: UpstreamConfig[] = (raw.upstreams ?? []).map((r: Raw) => ({
    name: r.name,
    url: r.url ?? targetUrl(r.targets?.[0]),
    targets: Array.isArray(r.targets) ? r.targets.map(targetUrl) : r.url === undefined ? [] : [r.url],
    weights: Array.isArray(r.targets) ? r.targets.map(targetWeight) : [1],
    configuredAs: r.targets === undefined ? 'url' : 'targets',
    downFor: ms(r.downFor, DEFAULTS.upstream.downFor),
    retryIdempotent: r.retryIdempotent ?? false,
    healthCheck:
      r.healthCheck === undefined
        ? null
        : {
            path: r.healthCheck.path,
            interval: ms(r.healthCheck.interval, DEFAULTS.upstream.healthCheck.interval),
            timeout: ms(r.healthCheck.timeout, DEFAULTS.upstream.healthCheck.timeout),
            unhealthyAfter: r.healthCheck.unhealthyAfter ?? DEFAULTS.upstream.healthCheck.unhealthyAfter,
            healthyAfter: r.healthCheck.healthyAfter ?? DEFAULTS.upstream.healthCheck.healthyAfter,
            method: r.healthCheck.method ?? 'GET',
            ...(r.healthCheck.expectStatus === undefined ? {} : { expectStatus: r.healthCheck.expectStatus }),
          },
    timeout: ms(r.timeout, limits.upstreamTimeout),
    connectTimeout: ms(r.connectTimeout, DEFAULTS.upstream.connectTimeout),
    connections: r.connections ?? DEFAULTS.upstream.connections,
    keepAliveTimeout: ms(r.keepAliveTimeout, DEFAULTS.upstream.keepAliveTimeout),
    tls: r.tls,
    audience: r.audience,
    forwardedHeaders: r.forwardedHeaders ?? FORWARDED_HEADERS,
  }));
  uniqueNames(upstreams, 'upstreams', true, bad);
  upstreams.forEach((u, i) => {
    const given = raw.upstreams[i] as Raw;
    if (given.url !== undefined && given.targets !== undefined) {
      bad(['upstreams', i, 'targets'], 'cannot be combined with url: give one url, or every instance in targets');
      return;
    }
    if (given.url === undefined && given.targets === undefined) {
      bad(['upstreams', i], 'needs a url (or targets: the URLs of several instances)');
      return;
    }
    const key = given.targets === undefined ? 'url' : 'targets';
    if (key === 'targets' && u.weights!.every((w) => w === 0)) {
      bad(['upstreams', i, 'targets'], 'gives every target weight 0: no request could be sent (weight 0 drains a target while the others take its requests)');
    }
    let first: URL | undefined;
    const origins = new Set<string>();
    u.targets.forEach((target, j) => {
      const at = key === 'url' ? ['upstreams', i, 'url'] : typeof given.targets[j] === 'object' ? ['upstreams', i, 'targets', j, 'url'] : ['upstreams', i, 'targets', j];
      let url: URL;
      try {
        url = new URL(target);
      } catch {
        bad(at, 'is not a valid URL');
        return;
      }
      if (url.search || url.hash) bad(at, 'must not carry a query or fragment');
      if (url.username || url.password) bad(at, 'must not carry credentials');
      if (first === undefined) first = url;
      else if (url.protocol !== first.protocol || url.pathname.replace(/\/$/, '') !== first.pathname.replace(/\/$/, '')) {
        // One base path (the Location rewrite, stripPrefix) and one TLS setting for every instance.
        bad(at, `must have the same scheme and path as targets[0] (${first.protocol}//…${first.pathname}): the targets are instances of one upstream, differing in host or port`);
      } else if (origins.has(url.origin)) {
        bad(at, `names the same host and port as an earlier target (${url.origin})`);
      }
      origins.add(url.origin);
    });
  });

  const rateLimitNames = new Set<string>((raw.rateLimits ?? []).map((r: Raw) => r.name));
  const quotaNames = new Set<string>((raw.quotas ?? []).map((r: Raw) => r.name));
  const issuerNames = new Set(issuers.map((i) => i.name));
  const upstreamNames = new Set(upstreams.map((u) => u.name));

  const networks = normalizeNetworks(raw.networks as Record<string, string[]> | undefined, bad);
  const globalHeaders = raw.headers === undefined ? null : checkHeaderRules(raw.headers as Raw, ['headers'], bad);

  const routes: RouteConfig[] = (raw.routes ?? []).map((r: Raw, i: number) => {
    const at = ['routes', i];
    const route: RouteConfig = {
      name: r.name,
      path: r.path,
      exact: r.exact ?? false,
      methods: r.methods ?? null,
      upstream: r.upstream,
      public: r.public ?? false,
      scopes: r.scopes ?? [],
      issuers: r.issuers ?? null,
      auth: r.auth ?? 'bearer',
      claims: (r.claims ?? []).map((c: string | Raw) => (typeof c === 'string' ? { rule: c } : { rule: c.rule, message: c.message })),
      stepUp: r.stepUp ? { ...r.stepUp, maxAuthAge: r.stepUp.maxAuthAge === undefined ? undefined : ms(r.stepUp.maxAuthAge, 0) } : undefined,
      hosts: r.hosts === undefined ? null : (r.hosts as string[]),
      headers: mergeHeaderRules(globalHeaders, r.headers as Raw | undefined, [...at, 'headers'], bad),
      allowFrom: r.allowFrom === undefined ? null : expandAllowFrom(r.allowFrom as string[], networks, [...at, 'allowFrom'], bad),
      senderConstrained: r.senderConstrained,
      forwardToken: r.forwardToken ?? true,
      forwardClaims: r.forwardClaims ?? {},
      rateLimits: r.rateLimits ?? [],
      quotas: r.quotas ?? [],
      maxConcurrent: r.maxConcurrent,
      timeout: r.timeout === undefined ? undefined : ms(r.timeout, 0),
      maxBodySize: r.maxBodySize === undefined ? undefined : bytes(r.maxBodySize, 0),
      stripPrefix: r.stripPrefix ?? false,
      websocket: websocketSettings(r.websocket, ms, bytes),
      requestBody: normalizeRequestBody(r.requestBody as Raw | undefined, r.methods ?? null, [...at, 'requestBody'], ctx.baseDir, bad),
      query: normalizeQuery(r.query as Raw | undefined, [...at, 'query'], ctx.baseDir, bad),
      params: normalizeParams(r.params as Raw | undefined, r.path, [...at, 'params'], ctx.baseDir, bad),
      requestHeaders: normalizeRequestHeaders(r.requestHeaders as Raw | undefined, [...at, 'requestHeaders'], ctx.baseDir, bad),
      responseBody: normalizeResponseBody(r.responseBody as Raw | undefined, [...at, 'responseBody'], ctx.baseDir, bad, bytes),
    };
    if (route.responseBody) {
      // The answer is read as it comes: gatehouse asks for it unencoded and whole.
      for (const name of WHOLE_ANSWER_HEADERS) {
        if (route.headers?.request.set[name] !== undefined) {
          bad([...at, 'responseBody'], `the route's headers.request.set names ${name}: with responseBody gatehouse asks the upstream for whole, unencoded answers itself`);
        }
      }
    }
    for (const header of Object.keys(route.forwardClaims)) {
      const lower = header.toLowerCase();
      if (route.headers?.request.set[lower] !== undefined || route.headers?.request.remove.includes(lower)) {
        bad([...at, 'forwardClaims', header], `is also in the route's headers.request rules: one header, one source`);
      }
    }
    if (!upstreamNames.has(route.upstream)) {
      bad([...at, 'upstream'], `names no upstream (known: ${[...upstreamNames].join(', ') || 'none'})`);
    }
    route.issuers?.forEach((name, j) => {
      if (!issuerNames.has(name)) bad([...at, 'issuers', j], `names no issuer (known: ${[...issuerNames].join(', ') || 'none'})`);
    });
    route.rateLimits.forEach((name, j) => {
      if (!rateLimitNames.has(name)) bad([...at, 'rateLimits', j], `names no entry of rateLimits (known: ${[...rateLimitNames].join(', ') || 'none'})`);
    });
    route.quotas.forEach((name, j) => {
      if (!quotaNames.has(name)) bad([...at, 'quotas', j], `names no entry of quotas (known: ${[...quotaNames].join(', ') || 'none'})`);
    });
    if (route.public) {
      for (const key of ['scopes', 'issuers', 'claims', 'stepUp', 'senderConstrained', 'forwardClaims'] as const) {
        if (r[key] !== undefined) bad([...at, key], 'cannot be set on a public route (public routes check no token)', true);
      }
      if (r.auth !== undefined) bad([...at, 'auth'], 'cannot be set on a public route', true);
    } else if (issuers.length === 0) {
      bad(at, 'needs a token but no issuers are configured (add issuers, or mark the route public: true)');
    }
    if (route.auth === 'cookie-only' && route.senderConstrained !== undefined && route.senderConstrained !== 'mtls') {
      // A token-handler session's token comes with no DPoP proof; only a certificate can constrain it.
      bad([...at, 'senderConstrained'], `${route.senderConstrained} cannot be met on a cookie-only route: a token from the token handler's cookie comes with no DPoP proof`);
    }
    if (route.websocket !== null && route.methods !== null && !route.methods.includes('GET')) {
      // RFC 6455 §4.1: the opening handshake is a GET.
      bad([...at, 'websocket'], 'needs GET among the route\'s methods: a WebSocket connection opens with a GET request');
    }
    if (route.websocket !== null && route.websocket.maxMessageSize < 1) {
      bad([...at, 'websocket', 'maxMessageSize'], 'must be at least 1 byte: 0 would close every connection at its first message');
    }
    if (route.public && typeof r.websocket === 'object' && r.websocket !== null && r.websocket.closeAtTokenExpiry !== undefined) {
      bad([...at, 'websocket', 'closeAtTokenExpiry'], 'cannot be set on a public route (public routes check no token)', true);
    }
    if ((route.auth === 'cookie' || route.auth === 'cookie-only') && !raw.tokenHandler) {
      bad([...at, 'auth'], 'needs the tokenHandler section to be configured');
    }
    route.hosts?.forEach((host, j) => {
      const problem = checkRouteHost(host);
      if (problem !== undefined) bad([...at, 'hosts', j], problem);
    });
    const pathProblem = checkRoutePath(route.path);
    if (pathProblem) bad([...at, 'path'], pathProblem);
    return route;
  });
  uniqueNames(routes, 'routes', true, bad);

  const redis = raw.redis
    ? {
        url: raw.redis.url,
        keyPrefix: raw.redis.keyPrefix ?? 'gatehouse:',
        timeout: ms(raw.redis.timeout, 250),
        onError: raw.redis.onError ?? 'failClosed',
        cluster: raw.redis.cluster ?? false,
      }
    : undefined;

  // Limits (issue: unrestricted resource consumption): docs/rate-limits.md.
  const defaultStore = redis ? 'redis' : 'memory';
  const defaultOnStoreError: 'failOpen' | 'failClosed' = redis?.onError ?? 'failClosed';
  const claimKeyed = new Set<string>();
  const checkKey = (at: (string | number)[], policyName: string, spec: unknown) => {
    if (typeof spec !== 'string') return;
    const parsed = parseKeySpec(spec);
    if (parsed.error !== undefined) bad([...at, 'key'], parsed.error);
    else if (keyNeedsPrincipal(parsed.parts)) claimKeyed.add(policyName);
  };
  const rateLimits: RateLimitConfig[] = (raw.rateLimits ?? []).map((r: Raw, i: number) => {
    if (r.store === 'redis' && !redis) bad(['rateLimits', i, 'store'], 'is redis but no top-level redis section is configured');
    checkKey(['rateLimits', i], r.name, r.key);
    const out: RateLimitConfig = {
      name: r.name,
      key: r.key,
      limit: r.limit,
      window: ms(r.window, 0),
      burst: r.burst ?? r.limit,
      store: r.store ?? defaultStore,
      onStoreError: r.onStoreError ?? defaultOnStoreError,
    };
    return out;
  });
  uniqueNames(rateLimits, 'rateLimits', true, bad);
  const quotas: QuotaConfig[] = (raw.quotas ?? []).map((r: Raw, i: number) => {
    if (r.store === 'redis' && !redis) bad(['quotas', i, 'store'], 'is redis but no top-level redis section is configured');
    checkKey(['quotas', i], r.name, r.key);
    return {
      name: r.name,
      key: r.key,
      limit: r.limit,
      period: r.period,
      store: r.store ?? defaultStore,
      onStoreError: r.onStoreError ?? defaultOnStoreError,
    };
  });
  uniqueNames(quotas, 'quotas', true, bad);

  // A claim-keyed policy on a public route would put every caller in one bucket: say so.
  routes.forEach((route, i) => {
    if (route.rateLimits.length > 31) bad(['routes', i, 'rateLimits'], 'names more than 31 rate limits');
    if (route.quotas.length > 31) bad(['routes', i, 'quotas'], 'names more than 31 quotas');
    if (!route.public) return;
    route.rateLimits.forEach((name, j) => {
      if (claimKeyed.has(name)) bad(['routes', i, 'rateLimits', j], `names a policy keyed on claim: but the route is public (no claims); use ip or header: keys`);
    });
    route.quotas.forEach((name, j) => {
      if (claimKeyed.has(name)) bad(['routes', i, 'quotas', j], `names a quota keyed on claim: but the route is public (no claims); use ip or header: keys`);
    });
  });
  const rawPre = raw.preAuthLimit as Raw | undefined;
  const preAuthLimit: PreAuthLimitConfig | undefined = rawPre
    ? {
        limit: rawPre.limit,
        window: ms(rawPre.window, 0),
        burst: rawPre.burst ?? rawPre.limit,
        // Memory by default: the guard protects this instance's CPU and costs no round trip.
        store: rawPre.store ?? 'memory',
        onStoreError: rawPre.onStoreError ?? defaultOnStoreError,
      }
    : undefined;
  if (preAuthLimit) {
    if (preAuthLimit.store === 'redis' && !redis) bad(['preAuthLimit', 'store'], 'is redis but no top-level redis section is configured');
  }
  const rawFailures = raw.authFailureLimit as Raw | undefined;
  const authFailureLimit: AuthFailureLimitConfig | null = rawFailures
    ? {
        limit: rawFailures.limit,
        window: ms(rawFailures.window, 0),
        blockFor: ms(rawFailures.blockFor, 0),
        store: rawFailures.store ?? 'memory',
        // failOpen: with the store down, tokens are still checked on every request; only the blocks lapse.
        onStoreError: rawFailures.onStoreError ?? 'failOpen',
      }
    : null;
  if (authFailureLimit?.store === 'redis' && !redis) bad(['authFailureLimit', 'store'], 'is redis but no top-level redis section is configured');
  if (authFailureLimit && issuers.length === 0) bad(['authFailureLimit'], 'counts failed authentications, but no issuers are configured (no route checks a token)');

  const th = raw.tokenHandler as Raw | undefined;

  const config: GatehouseConfig = {
    file: ctx.file,
    baseDir: ctx.baseDir,
    listen,
    admin:
      raw.admin && raw.admin.enabled !== false
        ? {
            host: raw.admin.host ?? '127.0.0.1',
            port: raw.admin.port ?? 9090,
            enabled: true,
            allowFrom: raw.admin.allowFrom === undefined ? null : expandAllowFrom(raw.admin.allowFrom as string[], networks, ['admin', 'allowFrom'], bad),
          }
        : null,
    workers: raw.workers ?? 'auto',
    trustedProxies: normalizeTrustedProxies(raw.trustedProxies, bad),
    networks,
    headers: globalHeaders,
    log: { level: raw.log?.level ?? 'info', accessLog: raw.log?.accessLog ?? true },
    tracing: raw.tracing === undefined ? null : { trustIncoming: raw.tracing.trustIncoming ?? true, sampled: raw.tracing.sampled ?? true },
    limits,
    issuers,
    upstreams,
    routes,
    rateLimits,
    quotas,
    preAuthLimit,
    authFailureLimit,
    memoryStore: { maxKeys: raw.memoryStore?.maxKeys ?? 100_000 },
    cors: normalizeCors(raw.cors as Raw | undefined, ms, bad),
    securityHeaders: { contentTypeOptions: raw.securityHeaders?.contentTypeOptions ?? true, cacheControl: raw.securityHeaders?.cacheControl ?? true },
    dpop: {
      algorithms: raw.dpop?.algorithms ?? [...DEFAULTS.dpop.algorithms],
      proofMaxAge: ms(raw.dpop?.proofMaxAge, DEFAULTS.dpop.proofMaxAge),
      clockSkew: ms(raw.dpop?.clockSkew, DEFAULTS.dpop.clockSkew),
      maxProofs: raw.dpop?.maxProofs ?? DEFAULTS.dpop.maxProofs,
      nonce: dpopNonce(raw.dpop?.nonce as boolean | Raw | undefined, ms),
    },
    redis,
    tokenHandler: th ? normalizeTokenHandler(th, { bad, ms, issuers, routes }) : undefined,
    gateway: {
      issuer: raw.gateway?.issuer ?? 'urn:gatehouse',
      signingKeys: raw.gateway?.signingKeys ?? [],
      keyDirectory: raw.gateway?.keyDirectory,
      tokenTtl: ms(raw.gateway?.tokenTtl, 5 * 60_000),
      algorithm: raw.gateway?.algorithm ?? 'ES256',
      keyRotationGrace: ms(raw.gateway?.keyRotationGrace, 24 * 3600_000),
      keyRotationInterval: raw.gateway?.keyRotationInterval === undefined ? undefined : ms(raw.gateway.keyRotationInterval, 0),
      realm: raw.gateway?.realm ?? 'gatehouse',
      paths: { allowSemicolons: raw.gateway?.paths?.allowSemicolons ?? false },
      methodOverride: raw.gateway?.methodOverride ?? 'refuse',
    },
    tokenCache: { enabled: raw.tokenCache?.enabled ?? true, maxEntries: raw.tokenCache?.maxEntries ?? 10_000 },
  };
  return { config, issues };
}

/** `dpop.nonce`: `true` or `{ lifetime, secret }` (5 minutes, no secret), or null when absent or `false`. */
function dpopNonce(raw: boolean | Raw | undefined, ms: (value: unknown, fallback: number) => number): { lifetime: number; secret: string | null } | null {
  if (raw === undefined || raw === false) return null;
  const given: Raw = raw === true ? {} : raw;
  return { lifetime: ms(given.lifetime, 5 * 60_000), secret: typeof given.secret === 'string' ? given.secret : null };
}

/** `routes[].websocket`: `true` or settings (each with its default), or null for absent / `false`. */
function websocketSettings(
  raw: boolean | Raw | undefined,
  ms: (value: unknown, fallback: number) => number,
  bytes: (value: unknown, fallback: number) => number,
): WebSocketConfig | null {
  if (raw === undefined || raw === false) return null;
  const given: Raw = raw === true ? {} : raw;
  const d = DEFAULTS.websocket;
  return {
    idleTimeout: ms(given.idleTimeout, d.idleTimeout),
    maxDuration: ms(given.maxDuration, d.maxDuration),
    closeAtTokenExpiry: given.closeAtTokenExpiry ?? d.closeAtTokenExpiry,
    maxConnections: given.maxConnections ?? d.maxConnections,
    maxConnectionsPerClient: given.maxConnectionsPerClient ?? d.maxConnectionsPerClient,
    maxMessageSize: bytes(given.maxMessageSize, d.maxMessageSize),
    maxMessageRate: typeof given.maxMessageRate === 'number' ? given.maxMessageRate : null,
  };
}

/** A `networks` name, and what an `allowFrom` entry that is not an address must look like. */
const NETWORK_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Every `networks` entry must be an IP or CIDR. */
function normalizeNetworks(raw: Record<string, string[]> | undefined, bad: (keyPath: (string | number)[], message: string) => void): Record<string, string[]> {
  const networks: Record<string, string[]> = {};
  for (const [name, entries] of Object.entries(raw ?? {})) {
    if (!Array.isArray(entries)) continue; // the schema has said so
    if (!NETWORK_NAME.test(name)) {
      bad(['networks', name], 'is not a usable name: a letter, then letters, digits, "-" or "_" (a name must not read as an address in allowFrom)');
      continue;
    }
    entries.forEach((entry, i) => {
      const problem = checkAddressRange(entry);
      if (problem !== undefined) bad(['networks', name, i], problem);
    });
    networks[name] = entries;
  }
  return networks;
}

/**
 * A route's `allowFrom`: each entry an IP, a CIDR or the name of a `networks` list (expanded);
 * the result holds addresses and ranges only.
 */
function expandAllowFrom(
  entries: string[],
  networks: Record<string, string[]>,
  at: (string | number)[],
  bad: (keyPath: (string | number)[], message: string) => void,
): string[] {
  const out: string[] = [];
  entries.forEach((entry, j) => {
    if (Object.hasOwn(networks, entry)) {
      out.push(...networks[entry]!);
      return;
    }
    const problem = checkAddressRange(entry);
    if (problem === undefined) {
      out.push(entry);
      return;
    }
    const known = Object.keys(networks);
    // A word without dots, colons or slashes was meant as a name.
    if (NETWORK_NAME.test(entry)) bad([...at, j], `names no entry of networks (known: ${known.join(', ') || 'none'})`);
    else bad([...at, j], `${problem}, nor the name of a networks entry`);
  });
  return out;
}

/** Every trustedProxies entry must be an IP or CIDR, and no range may hold every address (/0). */
function normalizeTrustedProxies(entries: string[] | undefined, bad: (keyPath: (string | number)[], message: string) => void): string[] {
  (entries ?? []).forEach((entry, i) => {
    const problem = checkTrustedProxy(entry);
    if (problem !== undefined) bad(['trustedProxies', i], problem);
  });
  return entries ?? [];
}

function uniqueNames(
  items: { name: string }[],
  key: string,
  isArray: boolean,
  bad: (keyPath: (string | number)[], message: string) => void,
): void {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const first = seen.get(item.name);
    if (first !== undefined) bad(isArray ? [key, i, 'name'] : [key, 'name'], `"${item.name}" is already used by ${key}[${first}]`);
    else seen.set(item.name, i);
  });
}

/** Route paths are literal segments or `{param}` segments; nothing that normalizes to something else. */
export function checkRoutePath(path: string): string | undefined {
  if (path === '/') return undefined;
  const segments = path.replace(/\/$/, '').split('/').slice(1);
  for (const segment of segments) {
    if (segment === '') return 'must not contain empty segments (//)';
    if (segment === '.' || segment === '..') return 'must not contain . or .. segments';
    if (/^\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(segment)) continue;
    // A request's ";" is refused, or (gateway.paths.allowSemicolons) starts parameters the
    // segment matches without: a literal with ";" would match no request as written.
    if (segment.includes(';')) return `has ";" in segment "${segment}" (path parameters are not part of a route path)`;
    if (/[{}%\\?#\s]/.test(segment)) return `has an invalid segment "${segment}" (use literal characters or a whole {param} segment)`;
  }
  return undefined;
}

/** A target as written: its URL, whether given alone or as `{ url, weight }`. */
function targetUrl(target: unknown): string {
  return typeof target === 'object' && target !== null ? (target as { url?: string }).url! : (target as string);
}

/** A target's weight: 1 unless `{ url, weight }` gives one. */
function targetWeight(target: unknown): number {
  const weight = typeof target === 'object' && target !== null ? (target as { weight?: unknown }).weight : undefined;
  return typeof weight === 'number' ? weight : 1;
}
