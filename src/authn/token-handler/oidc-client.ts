/**
 * The OpenID Connect client side of the OAuth agent: discovery, the authorization request, the
 * token endpoint (code and refresh grants, confidential client), ID-token validation and the
 * RP-initiated logout URL. Every exchange is timed and size-bounded.
 */
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { Agent, request, type Dispatcher } from 'undici';
import { isSecureOrLoopbackUrl } from '../../config/normalize.js';
import { clientTlsOptions, isOutboundTimeout, readBoundedBody } from '../../forward/outbound.js';
import { discoveryUrl } from '../discovery.js';
import { basicCredentials } from '../introspection.js';
import type { IssuerConfig, TokenHandlerConfig } from '../../config/types.js';

/** The parts of a discovery document the agent uses (OAuth metadata keep their own names). */
export interface OidcMetadata {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
  readonly jwks_uri: string;
  readonly end_session_endpoint?: string;
  readonly authorization_response_iss_parameter_supported?: boolean;
}

/**
 * The authorization server could not be reached or answered something unusable (→ 502).
 *
 * @example
 * ```ts
 * if (err instanceof AuthorizationServerUnavailable) return upstreamFailed(err.message);
 * ```
 */
export class AuthorizationServerUnavailable extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AuthorizationServerUnavailable';
  }
}

/**
 * The authorization server refused a grant with an OAuth error (RFC 6749 §5.2).
 *
 * @example
 * ```ts
 * if (err instanceof AuthorizationServerError && err.error === 'invalid_grant') logInAgain();
 * ```
 */
export class AuthorizationServerError extends Error {
  readonly error: string;
  readonly errorDescription: string | undefined;
  readonly status: number;
  constructor(status: number, error: string, errorDescription: string | undefined) {
    super(`${error}${errorDescription ? `: ${errorDescription}` : ''}`);
    this.name = 'AuthorizationServerError';
    this.status = status;
    this.error = error;
    this.errorDescription = errorDescription;
  }
}

/**
 * An ID token failed validation (signature, iss, aud, azp, nonce, sub, time).
 *
 * @example
 * ```ts
 * await client.verifyIdToken(idToken, { nonce }).catch((e) => { if (e instanceof IdTokenInvalid) deny(); });
 * ```
 */
export class IdTokenInvalid extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'IdTokenInvalid';
  }
}

/** A successful token-endpoint response (RFC 6749 §5.1). */
export interface TokenSet {
  readonly accessToken: string;
  readonly refreshToken: string | undefined;
  readonly idToken: string | undefined;
  /** seconds */
  readonly expiresIn: number | undefined;
  readonly scope: string | undefined;
}

/**
 * The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
 *
 * @example
 * ```ts
 * const verifier = randomToken();
 * const codeChallenge = pkceChallenge(verifier);
 * ```
 */
export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

/**
 * The agent's client of one authorization server.
 *
 * @example
 * ```ts
 * const client = createOidcClient(config.tokenHandler, issuer, config.baseDir);
 * const url = await client.authorizationUrl({ state, nonce, codeChallenge });
 * const tokens = await client.exchangeCode(code, verifier);
 * const claims = await client.verifyIdToken(tokens.idToken!, { nonce });
 * ```
 */
export interface OidcClient {
  /** The discovery document (cached; refetched after a failure or after `jwksRefresh`). */
  metadata(): Promise<OidcMetadata>;
  authorizationUrl(params: { state: string; nonce: string; codeChallenge: string; extra?: Record<string, string> }): Promise<string>;
  exchangeCode(code: string, codeVerifier: string): Promise<TokenSet>;
  refresh(refreshToken: string): Promise<TokenSet>;
  /** `maxAge` (seconds): the login asked for `max_age`, so `auth_time` must be recent enough (OIDC Core §3.1.2.1). */
  verifyIdToken(idToken: string, expect: { nonce?: string; subject?: string; maxAge?: number }): Promise<JWTPayload>;
  /** The RP-initiated logout URL, or null when the server does not publish `end_session_endpoint`. */
  endSessionUrl(idTokenHint: string | undefined): Promise<string | null>;
  /** For /readyz. */
  status(): { discovery: string };
  close(): Promise<void>;
}

interface Limits {
  timeout: number;
  maxResponseSize: number;
}

const FAILED_DISCOVERY_RETRY = 5_000;

/**
 * Build the client; reads the issuer's TLS files once (throws when one cannot be read).
 *
 * @example
 * ```ts
 * const client = createOidcClient(config.tokenHandler!, issuer, config.baseDir);
 * ```
 */
export function createOidcClient(config: TokenHandlerConfig, issuer: IssuerConfig, baseDir: string, now: () => number = Date.now): OidcClient {
  const tls = issuer.tls;
  const agent: Dispatcher = new Agent({
    connect: clientTlsOptions(issuer.tls, baseDir),
    keepAliveTimeout: 4_000,
    connections: 8,
  });
  const limits: Limits = { timeout: issuer.fetchTimeout, maxResponseSize: issuer.maxResponseSize };
  const issuerUrl = issuer.issuer;

  let cached: { value: OidcMetadata; at: number } | null = null;
  let inflight: Promise<OidcMetadata> | null = null;
  let lastFailure: { at: number; error: Error } | null = null;
  let jwks: ReturnType<typeof createRemoteJWKSet> | null = null;
  let jwksFor = '';

  async function discover(): Promise<OidcMetadata> {
    const { status, body } = await exchange(agent, 'GET', discoveryUrl(issuerUrl), { accept: 'application/json' }, undefined, limits);
    if (status !== 200) throw new AuthorizationServerUnavailable(`discovery answered ${status}`);
    const doc = parseJson(body, 'discovery');
    // OpenID Connect Discovery 1.0 §4.3: the issuer in the document must be exactly ours.
    if (doc.issuer !== issuerUrl) throw new AuthorizationServerUnavailable(`discovery issuer ${String(doc.issuer)} is not ${issuerUrl}`);
    for (const key of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
      if (typeof doc[key] !== 'string' || !isSecureOrLoopbackUrl(doc[key] as string)) {
        throw new AuthorizationServerUnavailable(`discovery ${key} is missing or not an https URL`);
      }
    }
    for (const key of ['end_session_endpoint'] as const) {
      if (doc[key] !== undefined && (typeof doc[key] !== 'string' || !isSecureOrLoopbackUrl(doc[key] as string))) {
        throw new AuthorizationServerUnavailable(`discovery ${key} is not an https URL`);
      }
    }
    return doc as unknown as OidcMetadata;
  }

  async function metadata(): Promise<OidcMetadata> {
    const t = now();
    if (cached && t - cached.at < issuer.jwksRefresh) return cached.value;
    if (lastFailure && !cached && t - lastFailure.at < FAILED_DISCOVERY_RETRY) throw lastFailure.error;
    inflight ??= discover()
      .then((value) => {
        cached = { value, at: now() };
        lastFailure = null;
        return value;
      })
      .catch((err: unknown) => {
        const error = err instanceof AuthorizationServerUnavailable ? err : new AuthorizationServerUnavailable(String((err as Error)?.message ?? err), err);
        lastFailure = { at: now(), error };
        // Keep serving the last good document while the server is away.
        if (cached) return cached.value;
        throw error;
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  function keySet(meta: OidcMetadata) {
    if (!jwks || jwksFor !== meta.jwks_uri) {
      jwksFor = meta.jwks_uri;
      jwks = createRemoteJWKSet(new URL(meta.jwks_uri), {
        timeoutDuration: limits.timeout,
        cooldownDuration: issuer.jwksCooldown,
        cacheMaxAge: issuer.jwksRefresh,
        [customFetch]: async (url: string) => {
          const { status, body, contentType } = await exchange(agent, 'GET', url, { accept: 'application/json, application/jwk-set+json' }, undefined, limits);
          return new Response(new Uint8Array(body), { status, headers: { 'content-type': contentType } });
        },
      });
    }
    return jwks;
  }

  /** RFC 6749 §2.3.1 Basic credentials, made once (the same encoding as the introspection client). */
  const basic = config.tokenEndpointAuthMethod === 'client_secret_basic' && config.clientSecret ? basicCredentials(config.clientId, config.clientSecret) : undefined;

  function clientAuth(form: URLSearchParams): Record<string, string> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (basic !== undefined) {
      headers.authorization = basic;
    } else {
      form.set('client_id', config.clientId);
      if (config.tokenEndpointAuthMethod === 'client_secret_post' && config.clientSecret) form.set('client_secret', config.clientSecret);
    }
    return headers;
  }

  async function tokenRequest(form: URLSearchParams): Promise<TokenSet> {
    const meta = await metadata();
    const headers = clientAuth(form);
    const { status, body } = await exchange(agent, 'POST', meta.token_endpoint, headers, form.toString(), limits);
    const doc = parseJson(body, 'token endpoint', status !== 200);
    if (status !== 200) {
      if (typeof doc.error === 'string') {
        throw new AuthorizationServerError(status, doc.error, typeof doc.error_description === 'string' ? doc.error_description : undefined);
      }
      throw new AuthorizationServerUnavailable(`token endpoint answered ${status}`);
    }
    if (typeof doc.access_token !== 'string' || doc.access_token === '') throw new AuthorizationServerUnavailable('token response has no access_token');
    if (typeof doc.token_type !== 'string' || doc.token_type.toLowerCase() !== 'bearer') {
      throw new AuthorizationServerUnavailable(`token response has token_type ${String(doc.token_type)}, not Bearer`);
    }
    return {
      accessToken: doc.access_token,
      refreshToken: typeof doc.refresh_token === 'string' && doc.refresh_token !== '' ? doc.refresh_token : undefined,
      idToken: typeof doc.id_token === 'string' && doc.id_token !== '' ? doc.id_token : undefined,
      expiresIn: typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : undefined,
      scope: typeof doc.scope === 'string' ? doc.scope : undefined,
    };
  }

  return {
    metadata,
    async authorizationUrl({ state, nonce, codeChallenge, extra }) {
      const meta = await metadata();
      const url = new URL(meta.authorization_endpoint);
      for (const [k, v] of Object.entries(config.extraParams)) url.searchParams.set(k, v);
      if (extra) for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
      url.searchParams.set('client_id', config.clientId);
      url.searchParams.set('redirect_uri', config.redirectUri);
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('scope', config.scope);
      url.searchParams.set('state', state);
      url.searchParams.set('nonce', nonce);
      url.searchParams.set('code_challenge', codeChallenge);
      url.searchParams.set('code_challenge_method', 'S256');
      return url.toString();
    },
    exchangeCode(code, codeVerifier) {
      return tokenRequest(
        new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: config.redirectUri, code_verifier: codeVerifier }),
      );
    },
    refresh(refreshToken) {
      return tokenRequest(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }));
    },
    async verifyIdToken(idToken, expect) {
      const meta = await metadata();
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(idToken, keySet(meta), {
          issuer: meta.issuer,
          audience: config.clientId,
          algorithms: issuer.algorithms,
          clockTolerance: Math.round(issuer.clockSkew / 1000),
          requiredClaims: ['sub', 'iat', 'exp'],
          currentDate: new Date(now()),
        }));
      } catch (err) {
        if (err instanceof joseErrors.JWKSTimeout || (err instanceof Error && err.name === 'AuthorizationServerUnavailable')) {
          throw new AuthorizationServerUnavailable('the key set of the authorization server could not be fetched', err);
        }
        throw new IdTokenInvalid(`ID token rejected: ${(err as Error).message}`, err);
      }
      // OIDC Core §3.1.3.7: with several audiences, azp must be us.
      if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== config.clientId) {
        throw new IdTokenInvalid('ID token azp is not this client');
      }
      if (payload.azp !== undefined && payload.azp !== config.clientId) throw new IdTokenInvalid('ID token azp is not this client');
      if (expect.nonce !== undefined && payload.nonce !== expect.nonce) throw new IdTokenInvalid('ID token nonce does not match the login');
      // OIDC Core §12.2: a refreshed ID token is about the same user.
      if (expect.subject !== undefined && payload.sub !== expect.subject) throw new IdTokenInvalid('refreshed ID token is about another subject');
      if (expect.maxAge !== undefined) {
        const authTime = payload.auth_time;
        if (typeof authTime !== 'number') throw new IdTokenInvalid('max_age was requested but the ID token has no auth_time');
        if (now() / 1000 - authTime > expect.maxAge + issuer.clockSkew / 1000) throw new IdTokenInvalid('the authentication is older than the max_age requested');
      }
      return payload;
    },
    async endSessionUrl(idTokenHint) {
      const meta = await metadata();
      if (!meta.end_session_endpoint) return null;
      const url = new URL(meta.end_session_endpoint);
      url.searchParams.set('client_id', config.clientId);
      if (config.postLogoutRedirectUri) url.searchParams.set('post_logout_redirect_uri', config.postLogoutRedirectUri);
      if (idTokenHint) url.searchParams.set('id_token_hint', idTokenHint);
      return url.toString();
    },
    status() {
      if (cached && !lastFailure) return { discovery: `ok (${Math.round((now() - cached.at) / 1000)}s ago)` };
      if (lastFailure) return { discovery: `${cached ? 'stale; ' : ''}last fetch failed: ${lastFailure.error.message}` };
      return { discovery: 'not fetched yet' };
    },
    async close() {
      await agent.close().catch(() => undefined);
    },
  };
}

function parseJson(body: Buffer, what: string, lenient = false): Record<string, unknown> {
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    if (lenient) return {};
  }
  if (lenient) return {};
  throw new AuthorizationServerUnavailable(`${what} response is not a JSON object`);
}

/** One timed, size-bounded exchange; redirects are not followed. */
async function exchange(
  dispatcher: Dispatcher,
  method: 'GET' | 'POST',
  url: string,
  headers: Record<string, string>,
  body: string | undefined,
  limits: Limits,
): Promise<{ status: number; body: Buffer; contentType: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), limits.timeout);
  timer.unref();
  try {
    const response = await request(url, {
      method,
      dispatcher,
      headers,
      body,
      signal: controller.signal,
      headersTimeout: limits.timeout,
      bodyTimeout: limits.timeout,
    });
    const bytes = await readBoundedBody(response.body, response.headers['content-length'], limits.maxResponseSize);
    if (!Buffer.isBuffer(bytes)) {
      throw new AuthorizationServerUnavailable(
        bytes.over === 'declared'
          ? `${url} answered ${bytes.declared} bytes, over the limit of ${limits.maxResponseSize}`
          : `${url} answered more than ${limits.maxResponseSize} bytes`,
      );
    }
    const contentType = response.headers['content-type'];
    return { status: response.statusCode, body: bytes, contentType: typeof contentType === 'string' ? contentType : 'application/json' };
  } catch (err) {
    if (err instanceof AuthorizationServerUnavailable) throw err;
    if (controller.signal.aborted || isOutboundTimeout(err)) throw new AuthorizationServerUnavailable(`${method} ${url}: no answer within ${limits.timeout} ms`, err);
    const e = err as NodeJS.ErrnoException;
    throw new AuthorizationServerUnavailable(`${method} ${url}: ${e.code ? `${e.code} ` : ''}${e.message}`, err);
  } finally {
    clearTimeout(timer);
  }
}
