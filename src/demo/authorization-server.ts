/**
 * The development authorization server: a real OpenID Connect / OAuth 2.0 server built on
 * `oidc-provider`, started on loopback by `npm run demo` and by every test that needs a real
 * issuer. Development only: keys are generated at start, clients have fixed secrets, any login
 * and password are accepted on the development login page.
 *
 * What it offers (each proved over HTTP by test/demo/authorization-server.test.ts):
 * - client credentials → JWT access tokens (RFC 9068: `typ: at+jwt`, `iss`, `aud`, `sub`,
 *   `client_id`, `scope`, `iat`, `exp`, `jti`) for the configured audience (resource indicator,
 *   RFC 8707), signed with RS256, PS256, ES256 or EdDSA; JWKS at `jwksUri`, OIDC discovery at
 *   `{issuer}/.well-known/openid-configuration`;
 * - opaque access tokens for clients registered with `access_token_format: 'opaque'`,
 *   introspection (RFC 7662, plus RFC 9701 JWT responses with
 *   `Accept: application/token-introspection+jwt`) and revocation (RFC 7009);
 * - the phantom-token convention (an addition to oidc-provider): introspection with
 *   `Accept: application/jwt` answers the token in RFC 9068 JWT form, or 204 when inactive;
 * - authorization code + PKCE (S256, required) through oidc-provider's development login and
 *   consent pages, refresh tokens for every client allowed the `refresh_token` grant, ID tokens
 *   carrying the account's claims, RP-initiated logout (`{issuer}/session/end`); the login
 *   page grants any requested `acr_values` (step-up, RFC 9470: `acr`, `amr: ['pwd','mfa']`,
 *   `auth_time` land in the access token);
 * - test controls: `mintAccessToken()` (any claims and header, signed with the real key),
 *   `rotateKeys()` (live key rotation), `setDown()` (503, reset or hang),
 *   `setLatency()`, `counts` (requests seen per endpoint), `registerClient()` (add a client once
 *   its redirect URI is known).
 *
 * Recommended demo clients, from {@link demoClients} (secrets in {@link DEMO_CLIENT_SECRETS}):
 *
 * | client_id     | grant                          | scope / use                                 | access token |
 * |---------------|--------------------------------|---------------------------------------------|--------------|
 * | `demo-client` | client_credentials             | `orders:read`                               | JWT          |
 * | `demo-admin`  | client_credentials             | `orders:read orders:write`                  | JWT          |
 * | `demo-opaque` | client_credentials             | `orders:read`                               | opaque       |
 * | `gateway`     | none (introspection only)      | introspects opaque tokens                   | -            |
 * | `spa`         | authorization_code + refresh   | `openid profile email offline_access orders:read orders:write` | JWT |
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ clients: demoClients('http://127.0.0.1:8080/callback') });
 * const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
 * // issuer: as.issuer, keys: as.jwksUri, audience: 'https://api.example.com'
 * await as.stop();
 * ```
 */
import {
  constants,
  createPrivateKey,
  randomBytes,
  sign as cryptoSign,
  type JsonWebKey as NodeJsonWebKey,
  type KeyObject,
} from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import Provider, {
  errors,
  type Adapter,
  type AdapterPayload,
  type Client,
  type ClientMetadata,
  type Configuration,
  type KoaContextWithOIDC,
  type Token,
} from 'oidc-provider';
import { Agent, request, type Dispatcher } from 'undici';

export type { ClientMetadata } from 'oidc-provider';

/**
 * Signing algorithms the development server can use for access tokens, ID tokens and JWT introspection.
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ signingAlg: 'ES256' satisfies SigningAlg });
 * ```
 */
export type SigningAlg = 'RS256' | 'PS256' | 'ES256' | 'EdDSA';

/**
 * The form of an access token: a JWT (by value, RFC 9068) or an opaque reference (introspect it).
 *
 * @example
 * ```ts
 * const client: ClientMetadata = { client_id: 'c', client_secret: 's', grant_types: ['client_credentials'],
 *   response_types: [], redirect_uris: [], access_token_format: 'opaque' satisfies AccessTokenFormat };
 * ```
 */
export type AccessTokenFormat = 'jwt' | 'opaque';

/**
 * How the server misbehaves while down: `unavailable` answers 503 with `Retry-After: 1`,
 * `reset` destroys the socket, `hang` never answers (for timeout tests).
 *
 * @example
 * ```ts
 * as.setDown(true, 'hang' satisfies DownMode, ['introspection']);
 * ```
 */
export type DownMode = 'unavailable' | 'reset' | 'hang';

/**
 * Options of {@link startAuthorizationServer}. Every field is optional.
 *
 * @example
 * ```ts
 * const options: AuthorizationServerOptions = { audience: 'https://orders.example', signingAlg: 'ES256', accessTokenTtl: 60 };
 * ```
 */
export interface AuthorizationServerOptions {
  /** Interface to listen on; default `127.0.0.1`. */
  host?: string;
  /** Port; default 0 (a free one). */
  port?: number;
  /** Resource indicator and `aud` of access tokens; default `https://api.example.com`. */
  audience?: string;
  /** More accepted resource indicators (each becomes the `aud` when requested with `resource=`). */
  extraAudiences?: string[];
  /** Default access-token format for the audience; a client overrides it with `access_token_format`. Default `jwt`. */
  accessTokenFormat?: AccessTokenFormat;
  /** Signing algorithm of access tokens, ID tokens and JWT introspection responses; default RS256. */
  signingAlg?: SigningAlg;
  /**
   * Registered clients (oidc-provider metadata, RFC 7591 names). A client's `scope` limits the
   * resource scopes it may obtain (asking for others is `invalid_scope`); `access_token_format`
   * chooses its token format. Default: {@link demoClients}(`http://127.0.0.1/callback`).
   */
  clients?: ClientMetadata[];
  /** The audience's scopes; default `['orders:read', 'orders:write']`. */
  scopes?: string[];
  /** Access-token lifetime in seconds; default 300. */
  accessTokenTtl?: number;
  /** Refresh-token lifetime in seconds; default 86400. */
  refreshTokenTtl?: number;
  /**
   * Claims per subject. For logins on the development page the login name is the `sub`; for
   * client credentials the `client_id` is. Every claim except the registered ones (`iss`, `sub`,
   * `aud`, `exp`, ...) lands in access tokens and introspection responses, and in ID tokens.
   */
  accounts?: Record<string, Record<string, unknown>>;
  /** Enable introspection (and JWT introspection responses); default true. */
  introspection?: boolean;
  /**
   * `acr_values_supported` (discovery). The development login grants whatever `acr_values` a
   * client asks for, listed or not. Default: the accounts' `acr` values and `urn:gatehouse:dev:mfa`.
   */
  acrValues?: string[];
  /** Skip the consent page: the grant is extended with whatever is requested. Default false. */
  autoConsent?: boolean;
  /** Serve HTTPS with this certificate; the issuer becomes `https://…`. `ca` verifies it for the helper calls. */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer };
}

/**
 * Requests seen per endpoint since start (or since {@link AuthorizationServer.resetCounts}),
 * counted even while the server is down.
 *
 * @example
 * ```ts
 * as.resetCounts();
 * await fetch(as.jwksUri);
 * const seen: EndpointCounts = as.counts; // seen.jwks === 1
 * ```
 */
/**
 * An endpoint of the server, as named in {@link EndpointCounts}.
 *
 * @example
 * ```ts
 * as.setDown(true, 'unavailable', ['jwks'] satisfies Endpoint[]);
 * ```
 */
export type Endpoint = keyof EndpointCounts;

export interface EndpointCounts {
  introspection: number;
  jwks: number;
  token: number;
  revocation: number;
  discovery: number;
  authorization: number;
  userinfo: number;
  endSession: number;
}

/**
 * A running development authorization server; see {@link startAuthorizationServer}.
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer();
 * const before = as.counts.jwks;
 * await fetch(as.jwksUri);
 * // as.counts.jwks === before + 1
 * await as.stop();
 * ```
 */
export interface AuthorizationServer {
  /** Issuer identifier, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  issuer: string;
  jwksUri: string;
  port: number;
  /** The oidc-provider instance now serving (a new one after {@link rotateKeys}). */
  readonly provider: Provider;
  /** The default audience (resource indicator). */
  audience: string;
  discoveryUri: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  introspectionEndpoint: string;
  revocationEndpoint: string;
  userinfoEndpoint: string;
  endSessionEndpoint: string;
  /** `kid` of the current signing key. */
  readonly kid: string;
  /** Runs the client-credentials grant (`client_secret_basic`) and returns the access token. */
  clientCredentialsToken(
    clientId: string,
    clientSecret: string,
    scope?: string,
    opts?: { resource?: string },
  ): Promise<string>;
  /** Same as {@link clientCredentialsToken} but returns the whole token response. */
  clientCredentialsGrant(
    clientId: string,
    clientSecret: string,
    scope?: string,
    opts?: { resource?: string },
  ): Promise<TokenResponse>;
  /** Introspects a token as the given (confidential) client; JSON response. */
  introspect(token: string, clientId: string, clientSecret: string): Promise<Record<string, unknown>>;
  /**
   * Signs a JWT with the server's current key, so only the claims make it wrong (for
   * hostile-token tests). Starts from an RFC 9068 access token (`iss`, `aud`, `sub`, `client_id`,
   * `scope`, `iat`, `exp` = now + `accessTokenTtl`, `jti`; header `alg`, `kid`, `typ: at+jwt`);
   * each given claim or header parameter replaces the default, `undefined` removes it. The
   * header is signed as given (`crit`, `jku`, … included).
   */
  mintAccessToken(claims?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** Revokes a token as the client it was issued to. */
  revoke(token: string, clientId: string, clientSecret: string): Promise<void>;
  /** New signing key (new `kid`) live; the old one leaves the JWKS unless `keepPrevious`. */
  rotateKeys(opts?: { keepPrevious?: boolean }): Promise<void>;
  /** Adds (or replaces) a client at run time; ids given in `clients` at start cannot be replaced. */
  registerClient(metadata: ClientMetadata): Promise<void>;
  counts: EndpointCounts;
  resetCounts(): void;
  /**
   * While down, requests fail per `mode` (default `unavailable`: 503): every request, or only
   * those to the endpoints listed in `only` (e.g. `['jwks']` keeps the token endpoint up).
   */
  setDown(down: boolean, mode?: DownMode, only?: Endpoint[]): void;
  /** Delay responses by `ms` (0 = none): all of them, or only those of the endpoints in `only`. */
  setLatency(ms: number, only?: Endpoint[]): void;
  stop(): Promise<void>;
}

/**
 * A token endpoint response (RFC 6749 §5.1).
 *
 * @example
 * ```ts
 * const { access_token, expires_in }: TokenResponse = await as.clientCredentialsGrant('demo-client', secret);
 * ```
 */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  scope?: string;
  refresh_token?: string;
  id_token?: string;
  [key: string]: unknown;
}

/**
 * A failed call of one of the server's helper methods, carrying the OAuth error.
 *
 * @example
 * ```ts
 * try { await as.clientCredentialsToken('demo-client', 'wrong'); }
 * catch (e) { if (e instanceof AuthorizationServerError) console.log(e.status, e.error); } // 401 invalid_client
 * ```
 */
export class AuthorizationServerError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly errorDescription?: string,
  ) {
    super(`authorization server answered ${status} ${error}${errorDescription ? `: ${errorDescription}` : ''}`);
    this.name = 'AuthorizationServerError';
  }
}

/**
 * Fixed development secrets of the {@link demoClients}. Never use them outside a demo or a test.
 *
 * @example
 * ```ts
 * const token = await as.clientCredentialsToken('demo-admin', DEMO_CLIENT_SECRETS['demo-admin'], 'orders:write');
 * ```
 */
export const DEMO_CLIENT_SECRETS = {
  'demo-client': 'demo-client-secret-not-for-production',
  'demo-admin': 'demo-admin-secret-not-for-production',
  'demo-opaque': 'demo-opaque-secret-not-for-production',
  gateway: 'gateway-secret-not-for-production',
  spa: 'spa-secret-not-for-production',
} as const;

/**
 * The recommended demo clients: `demo-client` (orders:read, JWT), `demo-admin` (orders:read
 * orders:write, JWT), `demo-opaque` (orders:read, opaque), `gateway` (introspection only) and
 * `spa` (confidential code flow + PKCE + refresh, for the token handler).
 *
 * @param redirectUri the `spa` client's redirect URI
 * @param postLogoutRedirectUri the `spa` client's post-logout redirect URI (default: the origin of `redirectUri` + `/`)
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ clients: demoClients('http://127.0.0.1:8080/callback') });
 * ```
 */
export function demoClients(redirectUri: string, postLogoutRedirectUri?: string): ClientMetadata[] {
  const logout = postLogoutRedirectUri ?? new URL('/', redirectUri).href;
  const machine = (clientId: keyof typeof DEMO_CLIENT_SECRETS, scope: string, format?: AccessTokenFormat): ClientMetadata => ({
    client_id: clientId,
    client_secret: DEMO_CLIENT_SECRETS[clientId],
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope,
    ...(format ? { access_token_format: format } : {}),
  });
  return [
    machine('demo-client', 'orders:read', 'jwt'),
    machine('demo-admin', 'orders:read orders:write', 'jwt'),
    machine('demo-opaque', 'orders:read', 'opaque'),
    {
      client_id: 'gateway',
      client_secret: DEMO_CLIENT_SECRETS.gateway,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'spa',
      client_secret: DEMO_CLIENT_SECRETS.spa,
      client_name: 'gatehouse demo SPA',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [logout],
      scope: 'openid profile email offline_access orders:read orders:write',
    },
  ];
}

/** Paths of the endpoints (set explicitly so `counts` and the URLs cannot drift). */
const ROUTES = {
  authorization: '/auth',
  token: '/token',
  introspection: '/token/introspection',
  revocation: '/token/revocation',
  jwks: '/jwks',
  userinfo: '/me',
  end_session: '/session/end',
} as const;

const DISCOVERY_PATH = '/.well-known/openid-configuration';

/** Claims an account entry can never override in a token (RFC 7519 §4.1, RFC 9068 §2.2, RFC 7662 §2.2). */
const RESERVED_CLAIMS = new Set([
  'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'client_id', 'scope', 'cnf', 'active', 'token_type', 'typ',
  'azp', 'nonce', 'sid', 'at_hash', 'c_hash', 's_hash', 'authorization_details',
]);

/** Claims of an ID token that oidc-provider itself manages. */
const PROTOCOL_ID_TOKEN_CLAIMS = new Set(['acr', 'amr', 'auth_time']);

const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
]);

/**
 * Starts the development authorization server on loopback (port 0 by default).
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ audience: 'https://api.example.com', scopes: ['orders:read'] });
 * const jwt = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
 * const opaque = await as.clientCredentialsToken('demo-opaque', DEMO_CLIENT_SECRETS['demo-opaque'], 'orders:read');
 * const info = await as.introspect(opaque, 'gateway', DEMO_CLIENT_SECRETS.gateway); // { active: true, … }
 * await as.stop();
 * ```
 */
export async function startAuthorizationServer(options: AuthorizationServerOptions = {}): Promise<AuthorizationServer> {
  const host = options.host ?? '127.0.0.1';
  const audience = options.audience ?? 'https://api.example.com';
  const audiences = new Set([audience, ...(options.extraAudiences ?? [])]);
  const defaultFormat: AccessTokenFormat = options.accessTokenFormat ?? 'jwt';
  const alg: SigningAlg = options.signingAlg ?? 'RS256';
  const clients = options.clients ?? demoClients('http://127.0.0.1/callback');
  const resourceScopes = options.scopes ?? ['orders:read', 'orders:write'];
  const accessTokenTtl = options.accessTokenTtl ?? 300;
  const refreshTokenTtl = options.refreshTokenTtl ?? 86_400;
  const accounts = options.accounts ?? {};
  const introspection = options.introspection ?? true;
  const autoConsent = options.autoConsent ?? false;
  const staticClientIds = new Set(clients.map((c) => c.client_id));
  const acrValues = options.acrValues ?? [
    ...new Set([
      ...Object.values(accounts).flatMap((claims) => (typeof claims['acr'] === 'string' ? [claims['acr']] : [])),
      'urn:gatehouse:dev:mfa',
    ]),
  ];

  const adapterFor = createMemoryAdapterFactory();
  // Cookie keys survive key rotation (a new Provider) so browser sessions do too.
  const cookieKeys = [randomBytes(32).toString('base64url')];
  let signingKeys: JWK[] = [await generateSigningJwk(alg)];

  // Account claims that are not protocol claims go into ID tokens too (scope `openid`).
  const accountClaimNames = new Set<string>();
  for (const claims of Object.values(accounts)) {
    for (const name of Object.keys(claims)) {
      if (!RESERVED_CLAIMS.has(name) && !PROTOCOL_ID_TOKEN_CLAIMS.has(name)) accountClaimNames.add(name);
    }
  }
  for (const standard of ['name', 'email', 'email_verified']) accountClaimNames.delete(standard);

  const server = options.tls
    ? https.createServer({ cert: options.tls.cert, key: options.tls.key })
    : http.createServer();
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const scheme = options.tls ? 'https' : 'http';
  const issuer = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const dispatcher: Dispatcher | undefined = options.tls
    ? new Agent({ connect: { ca: options.tls.ca ?? options.tls.cert } })
    : undefined;

  function scopesAllowedFor(client: Client | undefined): string[] {
    if (!client?.scope) return resourceScopes;
    const allowed = new Set(client.scope.split(' '));
    return resourceScopes.filter((s) => allowed.has(s));
  }

  function tokenFormatOf(client: Client | undefined): AccessTokenFormat {
    const format = client?.['access_token_format'] ?? client?.['accessTokenFormat'];
    return format === 'jwt' || format === 'opaque' ? format : defaultFormat;
  }

  function accountExtras(id: string | undefined): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const claims = id === undefined ? undefined : accounts[id];
    if (claims) {
      for (const [name, value] of Object.entries(claims)) {
        if (!RESERVED_CLAIMS.has(name)) out[name] = value;
      }
    }
    return out;
  }

  function configuration(): Configuration {
    return {
      adapter: adapterFor,
      clients,
      clientDefaults: {
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: alg,
        ...(introspection ? { introspection_signed_response_alg: alg } : {}),
      },
      extraClientMetadata: {
        properties: ['access_token_format'],
        validator(_ctx: unknown, key: string, value: unknown) {
          if (key === 'access_token_format' && value !== undefined && value !== 'jwt' && value !== 'opaque') {
            throw new errors.InvalidClientMetadata('access_token_format must be "jwt" or "opaque"');
          }
        },
      },
      jwks: { keys: signingKeys },
      cookies: { keys: cookieKeys },
      // Non-empty, or oidc-provider leaves `acr` out of ID tokens.
      acrValues,
      // Client `scope` metadata may only name scopes listed here, so the API's scopes are too.
      scopes: [...new Set(['openid', 'offline_access', 'profile', 'email', ...resourceScopes])],
      claims: {
        // oidc-provider's defaults (claims without a scope), then the scoped ones.
        acr: null,
        amr: null,
        auth_time: null,
        iss: null,
        sid: null,
        openid: ['sub', ...accountClaimNames],
        profile: ['name'],
        email: ['email', 'email_verified'],
      },
      // Profile claims in the ID token itself: the token handler reads them from there.
      conformIdTokenClaims: false,
      routes: ROUTES,
      pkce: { required: () => true },
      ttl: {
        AccessToken: (_ctx: unknown, token: Token) =>
          (token['resourceServer'] as { accessTokenTTL?: number } | undefined)?.accessTokenTTL ?? accessTokenTtl,
        ClientCredentials: (_ctx: unknown, token: Token) =>
          (token['resourceServer'] as { accessTokenTTL?: number } | undefined)?.accessTokenTTL ?? accessTokenTtl,
        AuthorizationCode: 60,
        IdToken: 3600,
        RefreshToken: refreshTokenTtl,
        Interaction: 3600,
        Session: 86_400,
        Grant: 86_400,
      },
      async findAccount(_ctx: unknown, sub: string) {
        return {
          accountId: sub,
          async claims() {
            return { name: sub, ...accounts[sub], sub };
          },
        };
      },
      async extraTokenClaims(ctx: KoaContextWithOIDC, token: Token) {
        const extra = accountExtras(token.accountId ?? token.clientId);
        // A client's own token: `sub` is the client (as in the JWT form), so introspection says so too.
        if (!token.accountId && token.clientId) extra['sub'] = token.clientId;
        // RFC 9068 §2.2.1: authentication information of the user, when there is one.
        const source = ctx.oidc?.entities['AuthorizationCode'] ?? ctx.oidc?.entities['RefreshToken'];
        // The login (see devLogin) decided acr/amr, so they win over the account's static values.
        if (token.accountId && source) {
          if (source['authTime'] !== undefined) extra['auth_time'] = source['authTime'];
          if (source['acr'] !== undefined) extra['acr'] = source['acr'];
          if (source['amr'] !== undefined) extra['amr'] = source['amr'];
        }
        return Object.keys(extra).length ? extra : undefined;
      },
      // Refresh tokens for every client allowed the grant, with or without offline_access.
      async issueRefreshToken(_ctx: unknown, client: Client) {
        return client.grantTypeAllowed('refresh_token');
      },
      async loadExistingGrant(ctx: GrantContext) {
        const { oidc } = ctx;
        const grantId = oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(oidc.client.clientId);
        let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
        if (!autoConsent) return grant;
        grant ??= new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
        grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
        for (const [indicator, rs] of Object.entries(oidc.resourceServers ?? {})) {
          grant.addResourceScope(indicator, rs.scope);
        }
        await grant.save();
        return grant;
      },
      features: {
        devInteractions: { enabled: true },
        clientCredentials: { enabled: true },
        introspection: {
          enabled: introspection,
          // Any confidential client may introspect (the gateway); a public one only its own tokens.
          async allowedPolicy(ctx: KoaContextWithOIDC, client: Client, token: Token) {
            return client.clientAuthMethod !== 'none' || token.clientId === client.clientId;
          },
        },
        jwtIntrospection: { enabled: introspection },
        revocation: {
          enabled: true,
          async allowedPolicy(_ctx: unknown, client: Client, token: Token) {
            if (token.clientId !== client.clientId) {
              throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
            }
            return true;
          },
        },
        resourceIndicators: {
          enabled: true,
          async defaultResource(_ctx: unknown, _client: unknown, oneOf?: string[]) {
            return oneOf ?? audience;
          },
          // Access tokens of the code flow are for the API, not for userinfo.
          async useGrantedResource() {
            return true;
          },
          async getResourceServerInfo(ctx: KoaContextWithOIDC, indicator: string, client: Client) {
            if (!audiences.has(indicator)) throw new errors.InvalidTarget();
            const allowed = scopesAllowedFor(client);
            const requested = ctx.oidc?.params?.['scope'];
            if (typeof requested === 'string') {
              const allowedSet = new Set(allowed);
              for (const scope of requested.split(' ')) {
                if (resourceScopes.includes(scope) && !allowedSet.has(scope)) {
                  throw new errors.InvalidScope('requested scope is not allowed', scope);
                }
              }
            }
            const format = tokenFormatOf(client);
            return {
              scope: allowed.join(' '),
              audience: indicator,
              accessTokenTTL: accessTokenTtl,
              accessTokenFormat: format,
              ...(format === 'jwt' ? { jwt: { sign: { alg } } } : {}),
            };
          },
        },
        rpInitiatedLogout: {
          enabled: true,
          // `form` is oidc-provider's hidden form (id op.logoutForm, with its xsrf field).
          async logoutSource(ctx: { body: string }, form: string) {
            ctx.body = page('Sign out', `${form}<p>Sign out of the gatehouse development authorization server?</p>
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
          },
          async postLogoutSuccessSource(ctx: { body: string }) {
            ctx.body = page('Signed out', '<p>You are signed out.</p>');
          },
        },
        userinfo: { enabled: true },
      },
      // The development error page; quiet about customising it.
      async renderError(ctx: { type: string; body: string }, out: Record<string, string>) {
        ctx.type = 'html';
        ctx.body = page('Error', `<pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
      },
    };
  }

  /**
   * Phantom-token convention (not in oidc-provider, offered by several commercial servers):
   * introspection with `Accept: application/jwt` answers 200 `application/jwt` with the token in
   * JWT form (RFC 9068, signed with the current key, a fresh `jti`), or 204 when inactive.
   */
  const importedKeys = new Map<string, ReturnType<typeof importJWK>>();
  function decorate(p: Provider): Provider {
    p.use(devLogin(p));
    if (!introspection) return p;
    p.use(async (ctx: KoaLikeContext, next: () => Promise<void>) => {
      if (ctx.path !== ROUTES.introspection || ctx.method !== 'POST' || !acceptsOnly(ctx.get('accept'), 'application/jwt')) {
        return next();
      }
      ctx.req.headers.accept = 'application/json';
      await next();
      const body = ctx.body as Record<string, unknown> | null | undefined;
      if (ctx.status !== 200 || !body || typeof body !== 'object') return;
      if (body['active'] !== true) {
        ctx.status = 204;
        ctx.body = null;
        return;
      }
      const { active: _a, token_type: _t, jti: _j, ...claims } = body;
      const jwk = signingKeys[0]!;
      let key = importedKeys.get(jwk.kid!);
      if (!key) importedKeys.set(jwk.kid!, (key = importJWK(jwk, alg)));
      ctx.body = await new SignJWT({ ...claims, iss: issuer })
        .setProtectedHeader({ alg, kid: jwk.kid!, typ: 'at+jwt' })
        .setJti(randomBytes(16).toString('base64url'))
        .sign(await key);
      ctx.type = 'application/jwt';
    });
    return p;
  }

  /**
   * The development login page's submit, with authentication context: any login and password
   * pass; `acr` is the first `acr_values` the client asked for (the dev login "performs" any
   * step-up, RFC 9470), else the account's `acr`; `amr` is `['pwd', 'mfa']` after a step-up, else
   * the account's `amr`, else `['pwd']`. The consent submit stays oidc-provider's own.
   */
  function devLogin(p: Provider) {
    return async (ctx: KoaLikeContext, next: () => Promise<void>) => {
      if (ctx.method !== 'POST' || !INTERACTION_SUBMIT.test(ctx.path)) return next();
      let details: { prompt: { name: string }; params: Record<string, unknown> };
      try {
        details = (await p.interactionDetails(ctx.req, ctx.res)) as typeof details;
      } catch {
        return next(); // no interaction: oidc-provider renders the error
      }
      if (details.prompt.name !== 'login') return next();
      const form = new URLSearchParams(await readSmallBody(ctx.req));
      const accountId = form.get('login');
      if (!accountId) {
        ctx.status = 400;
        ctx.body = page('Sign-in', '<p>A login is required.</p>');
        return;
      }
      const account = accounts[accountId];
      const asked = typeof details.params['acr_values'] === 'string' ? details.params['acr_values'].split(' ').filter(Boolean) : [];
      const acr = asked[0] ?? (typeof account?.['acr'] === 'string' ? account['acr'] : undefined);
      const amr = asked.length > 0 ? ['pwd', 'mfa'] : Array.isArray(account?.['amr']) ? account['amr'] : ['pwd'];
      await p.interactionFinished(ctx.req, ctx.res, { login: { accountId, amr, ...(acr ? { acr } : {}) } }, {
        mergeWithLastSubmission: false,
      });
    };
  }

  let provider: Provider;
  try {
    provider = decorate(createProvider(issuer, configuration()));
    // oidc-provider checks static clients on first use; a bad one should fail the start instead.
    for (const client of clients) await provider.Client.find(client.client_id);
  } catch (err) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await dispatcher?.close();
    throw err;
  }
  let handle = provider.callback();

  const counts: EndpointCounts = {
    introspection: 0, jwks: 0, token: 0, revocation: 0, discovery: 0, authorization: 0, userinfo: 0, endSession: 0,
  };
  let down: { mode: DownMode; only: Set<Endpoint> | null } | null = null;
  let latency: { ms: number; only: Set<Endpoint> | null } | null = null;

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const endpoint = endpointOf(req.url ?? '/');
    if (endpoint) counts[endpoint]++;
    if (down !== null && (down.only === null || (endpoint !== null && down.only.has(endpoint)))) {
      if (down.mode === 'reset') {
        req.socket.destroy();
      } else if (down.mode === 'unavailable') {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', connection: 'close' });
        res.end('{"error":"temporarily_unavailable","error_description":"the authorization server is down (test)"}');
      }
      // 'hang': never answer; stop() destroys the socket.
      return;
    }
    const current = handle;
    if (latency !== null && (latency.only === null || (endpoint !== null && latency.only.has(endpoint)))) {
      setTimeout(() => void current(req, res), latency.ms);
    } else {
      void current(req, res);
    }
  });

  async function call(url: string, clientId: string, clientSecret: string, form: Record<string, string>) {
    const res = await request(url, {
      method: 'POST',
      headers: {
        authorization: basicAuth(clientId, clientSecret),
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams(form).toString(),
      ...(dispatcher ? { dispatcher } : {}),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      let body: { error?: string; error_description?: string } = {};
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        // not JSON (e.g. the server is down and something else answered)
      }
      throw new AuthorizationServerError(res.statusCode, body.error ?? 'unexpected_response', body.error_description);
    }
    return text;
  }

  const clientScopes = new Map(clients.map((c) => [c.client_id, c.scope]));

  async function clientCredentialsGrant(clientId: string, clientSecret: string, scope?: string, opts: { resource?: string } = {}) {
    const form: Record<string, string> = { grant_type: 'client_credentials' };
    const requested = scope ?? clientScopes.get(clientId);
    if (requested) form['scope'] = requested;
    if (opts.resource) form['resource'] = opts.resource;
    return JSON.parse(await call(`${issuer}${ROUTES.token}`, clientId, clientSecret, form)) as TokenResponse;
  }

  let stopping: Promise<void> | undefined;
  const as: AuthorizationServer = {
    issuer,
    port,
    audience,
    get provider() {
      return provider;
    },
    get kid() {
      return signingKeys[0]!.kid!;
    },
    jwksUri: `${issuer}${ROUTES.jwks}`,
    discoveryUri: `${issuer}${DISCOVERY_PATH}`,
    authorizationEndpoint: `${issuer}${ROUTES.authorization}`,
    tokenEndpoint: `${issuer}${ROUTES.token}`,
    introspectionEndpoint: `${issuer}${ROUTES.introspection}`,
    revocationEndpoint: `${issuer}${ROUTES.revocation}`,
    userinfoEndpoint: `${issuer}${ROUTES.userinfo}`,
    endSessionEndpoint: `${issuer}${ROUTES.end_session}`,
    counts,
    clientCredentialsGrant,
    async clientCredentialsToken(clientId, clientSecret, scope, opts) {
      return (await clientCredentialsGrant(clientId, clientSecret, scope, opts)).access_token;
    },
    async introspect(token, clientId, clientSecret) {
      const text = await call(`${issuer}${ROUTES.introspection}`, clientId, clientSecret, {
        token,
        token_type_hint: 'access_token',
      });
      return JSON.parse(text) as Record<string, unknown>;
    },
    async revoke(token, clientId, clientSecret) {
      await call(`${issuer}${ROUTES.revocation}`, clientId, clientSecret, { token, token_type_hint: 'access_token' });
    },
    async mintAccessToken(claims = {}, header = {}) {
      const jwk = signingKeys[0]!;
      const now = Math.floor(Date.now() / 1000);
      const payload = withOverrides(
        {
          iss: issuer, aud: audience, sub: 'test-subject', client_id: 'test-client', scope: resourceScopes.join(' '),
          iat: now, exp: now + accessTokenTtl, jti: randomBytes(16).toString('base64url'),
        },
        claims,
      );
      const protectedHeader = withOverrides({ alg, kid: jwk.kid, typ: 'at+jwt' }, header);
      return signCompact(protectedHeader, payload, jwk);
    },
    async rotateKeys(opts = {}) {
      const next = await generateSigningJwk(alg);
      signingKeys = opts.keepPrevious ? [next, ...signingKeys] : [next];
      // oidc-provider reads `jwks` once: serve from a new instance sharing storage, clients and cookie keys.
      provider = decorate(createProvider(issuer, configuration()));
      handle = provider.callback();
    },
    async registerClient(metadata) {
      if (staticClientIds.has(metadata.client_id)) {
        throw new TypeError(`client ${metadata.client_id} was given at start and cannot be replaced`);
      }
      await provider.Client.validate(metadata);
      await adapterFor('Client').upsert(metadata.client_id, { ...metadata });
    },
    resetCounts() {
      for (const key of Object.keys(counts) as (keyof EndpointCounts)[]) counts[key] = 0;
    },
    setDown(isDown, mode = 'unavailable', only) {
      down = isDown ? { mode, only: only ? new Set(only) : null } : null;
    },
    setLatency(ms, only) {
      latency = ms > 0 ? { ms, only: only ? new Set(only) : null } : null;
    },
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
        await closed;
        await dispatcher?.close();
      })();
      return stopping;
    },
  };
  return as;
}

/** The parts of oidc-provider's context that `loadExistingGrant` uses. */
interface GrantContext {
  oidc: {
    result?: { consent?: { grantId?: string } };
    session: { accountId: string; grantIdFor(clientId: string): string | undefined };
    client: Client;
    requestParamOIDCScopes: Set<string>;
    resourceServers?: Record<string, { scope: string }>;
    provider: {
      Grant: {
        find(id: string): Promise<GrantLike | undefined>;
        new (init: { clientId: string; accountId: string }): GrantLike;
      };
    };
  };
}

/** The parts of a Koa context the phantom-JWT middleware uses. */
interface KoaLikeContext {
  path: string;
  method: string;
  status: number;
  body: unknown;
  type: string;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  get(field: string): string;
}

function withOverrides(defaults: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...defaults };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete out[name];
    else out[name] = value;
  }
  return out;
}

/**
 * JWS compact serialization signed with the server key under the key's own algorithm (whatever
 * `alg` the header claims), without any header validation: hostile tokens need exactly that.
 */
function signCompact(header: Record<string, unknown>, payload: Record<string, unknown>, jwk: JWK): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${b64(header)}.${b64(payload)}`;
  const key: KeyObject = createPrivateKey({ key: jwk as NodeJsonWebKey, format: 'jwk' });
  let signature: Buffer;
  switch (jwk.alg as SigningAlg) {
    case 'RS256':
      signature = cryptoSign('sha256', Buffer.from(input), key);
      break;
    case 'PS256':
      signature = cryptoSign('sha256', Buffer.from(input), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
      break;
    case 'ES256':
      signature = cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'EdDSA':
      signature = cryptoSign(null, Buffer.from(input), key);
      break;
  }
  return `${input}.${signature.toString('base64url')}`;
}

/** oidc-provider's devInteractions submit route (`POST /interaction/:uid`). */
const INTERACTION_SUBMIT = /^\/interaction\/[^/]+$/;

/** Reads a small request body (a login form); refuses more than 16 KiB. */
async function readSmallBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('login form too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** True when `accept` names `type` and no other media type (`application/jwt` alone, or with q=1). */
function acceptsOnly(accept: string, type: string): boolean {
  const types = accept.split(',').map((part) => part.split(';')[0]!.trim().toLowerCase()).filter(Boolean);
  return types.length > 0 && types.every((t) => t === type);
}

interface GrantLike {
  addOIDCScope(scope: string): void;
  addResourceScope(indicator: string, scope: string): void;
  save(): Promise<string>;
}

/**
 * `new Provider` with its "devInteractions is a development-only feature" warning left out: this
 * server is development-only by design and says so at the top; the warning would repeat on every
 * start and every key rotation.
 */
function createProvider(issuer: string, configuration: Configuration): Provider {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('feature devInteractions is enabled')) return;
    warn(...args);
  };
  try {
    return new Provider(issuer, configuration);
  } finally {
    console.warn = warn;
  }
}

const ENDPOINT_BY_PATH = new Map<string, Endpoint>([
  [ROUTES.token, 'token'],
  [ROUTES.introspection, 'introspection'],
  [ROUTES.revocation, 'revocation'],
  [ROUTES.jwks, 'jwks'],
  [DISCOVERY_PATH, 'discovery'],
  [ROUTES.authorization, 'authorization'],
  [ROUTES.userinfo, 'userinfo'],
  [ROUTES.end_session, 'endSession'],
]);

function endpointOf(url: string): Endpoint | null {
  const q = url.indexOf('?');
  return ENDPOINT_BY_PATH.get(q === -1 ? url : url.slice(0, q)) ?? null;
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding. */
function basicAuth(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function generateSigningJwk(alg: SigningAlg): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === 'RS256' || alg === 'PS256' ? { modulusLength: 2048 } : {}),
  });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = alg;
  jwk.use = 'sig';
  return jwk;
}

/**
 * A storage adapter per server: a Map with expiry. oidc-provider's own memory adapter shares one
 * 1000-entry LRU across every instance in the process, which two servers in one test (or a
 * benchmark minting many tokens) would trip over.
 */
function createMemoryAdapterFactory(): (model: string) => Adapter {
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const grants = new Map<string, Set<string>>();
  const lookups = new Map<string, string>();
  let writes = 0;

  const get = (key: string): AdapterPayload | undefined => {
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry.payload;
  };
  const sweep = () => {
    const now = Date.now();
    for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key);
    for (const [grantId, keys] of grants) {
      for (const key of keys) if (!entries.has(key)) keys.delete(key);
      if (keys.size === 0) grants.delete(grantId);
    }
    for (const [lookup, key] of lookups) if (!entries.has(key)) lookups.delete(lookup);
  };

  return (model: string): Adapter => {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        if (++writes % 1024 === 0) sweep();
        const key = keyOf(id);
        entries.set(key, { payload, expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity });
        if (GRANTABLE.has(model) && payload.grantId) {
          let keys = grants.get(payload.grantId);
          if (!keys) grants.set(payload.grantId, (keys = new Set()));
          keys.add(key);
        }
        if (model === 'Session' && typeof payload.uid === 'string') lookups.set(`uid:${payload.uid}`, key);
        if (typeof payload.userCode === 'string') lookups.set(`userCode:${payload.userCode}`, key);
      },
      async find(id) {
        return get(keyOf(id));
      },
      async findByUid(uid) {
        const key = lookups.get(`uid:${uid}`);
        return key === undefined ? undefined : get(key);
      },
      async findByUserCode(userCode) {
        const key = lookups.get(`userCode:${userCode}`);
        return key === undefined ? undefined : get(key);
      },
      async consume(id) {
        const payload = get(keyOf(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        entries.delete(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        const keys = grants.get(grantId);
        if (!keys) return;
        for (const key of keys) entries.delete(key);
        grants.delete(grantId);
      },
    };
  };
}
