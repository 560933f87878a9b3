import type { ConfigIssue } from '../errors.js';
import type { TracingSettings } from '../telemetry/trace-context.js';
import type { SchemaDialect } from '../validate/body-schema.js';
/**
 * The config after loading: durations in milliseconds, sizes in bytes, defaults applied.
 * Raw key names are the config contract (see schema/gatehouse.schema.json).
 */

export interface ClientTlsConfig {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

export interface ListenerTlsConfig {
  cert: string;
  key: string;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  ciphers?: string;
  http2?: boolean;
  clientCa?: string;
  requestCert?: boolean | 'optional' | 'required';
  hsts?: { maxAge?: number; includeSubDomains?: boolean; preload?: boolean; enabled?: boolean };
  reload?: { watch?: boolean; debounce?: number };
  /** More certificates chosen by SNI; `cert`/`key` stay the default. */
  sni?: { hosts?: string[]; cert: string; key: string }[];
}

export interface ListenerConfig {
  name: string;
  host: string;
  port: number;
  tls?: ListenerTlsConfig;
  allowPlaintext?: boolean;
  redirectToHttps?: boolean;
  httpsPort?: number;
  http2?: { maxConcurrentStreams?: number; maxHeaderListSize?: number; maxResetsPerSecond?: number };
}

export interface IntrospectionConfig {
  endpoint?: string;
  clientId: string;
  clientSecret?: string;
  authMethod: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  privateKey?: string;
  accept: 'application/json' | 'application/jwt' | 'application/token-introspection+jwt';
  /** ms */
  cacheTtl: number;
  /** ms */
  negativeCacheTtl: number;
  /** ms */
  timeout: number;
  audience?: string;
}

export interface IssuerConfig {
  name: string;
  issuer: string;
  jwksUri?: string;
  discovery: boolean;
  audiences: string[];
  algorithms: string[];
  /** ms */
  clockSkew: number;
  requireTyp?: string;
  /** ms */
  maxTokenAge?: number;
  requiredClaims: string[];
  /** bytes */
  maxTokenSize: number;
  /** ms */
  jwksRefresh: number;
  /** ms */
  jwksCooldown: number;
  /** ms */
  fetchTimeout: number;
  /** bytes */
  maxResponseSize: number;
  tls?: ClientTlsConfig;
  introspection?: IntrospectionConfig;
}

/** The forwarding headers gatehouse can set on an upstream request (all four by default). */
export type ForwardedHeader = 'x-forwarded-for' | 'x-forwarded-proto' | 'x-forwarded-host' | 'forwarded' | 'client-cert';

export const FORWARDED_HEADERS: readonly ForwardedHeader[] = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'];

/** Every forwarding header an upstream can be given: the default four and `client-cert` (RFC 9440), which is sent only when listed. */
export const ALL_FORWARDED_HEADERS: readonly ForwardedHeader[] = [...FORWARDED_HEADERS, 'client-cert'];

export interface UpstreamConfig {
  name: string;
  /** The first of `targets` (the only one for an upstream configured with `url`). */
  url: string;
  /** Every instance requests go to, round robin: `[url]`, or `upstreams[].targets`. Same scheme and path. */
  targets: string[];
  /** Each target's share of the requests (`{ url, weight }`; 1 when not given; 0: drained), in the order of `targets`. */
  weights?: number[];
  /** Which key the file used, `url` or `targets` (for messages that name it); absent in a config built in code. */
  configuredAs?: 'url' | 'targets';
  /** ms a target that could not be reached is left out of the rotation. */
  downFor: number;
  /** Send a bodiless GET, HEAD or OPTIONS once more when its connection broke before an answer. */
  retryIdempotent?: boolean;
  /** Active health checks of every target; null or absent: the requests are the only probes. */
  healthCheck?: HealthCheckConfig | null;
  /** ms */
  timeout: number;
  /** ms */
  connectTimeout: number;
  connections: number;
  /** ms */
  keepAliveTimeout: number;
  tls?: ClientTlsConfig;
  audience?: string;
  /**
   * Which forwarding headers this upstream gets (default: all four). A client's own values of
   * these headers are dropped whether or not gatehouse sets them.
   */
  forwardedHeaders: readonly ForwardedHeader[];
}

/** `upstreams[].healthCheck`: a GET to each target every `interval`. */
export interface HealthCheckConfig {
  /** The path (and query) probed on each target's origin, e.g. `/healthz`. */
  path: string;
  /** ms between the end of one probe and the next. */
  interval: number;
  /** ms a probe may take (connection and answer head) before it counts as failed. */
  timeout: number;
  /** Failed probes in a row that take a target out of the rotation. */
  unhealthyAfter: number;
  /** Passed probes in a row that bring it back. */
  healthyAfter: number;
  /** The probe's method (default GET; HEAD asks for no body). */
  method?: 'GET' | 'HEAD';
  /** The statuses that pass: codes (`200`) and ranges (`2XX`); absent: 2XX and 3XX. */
  expectStatus?: (number | string)[];
}

/** Headers set (replacing any of that name) and removed, names lowercase. */
export interface HeaderRules {
  set: Record<string, string>;
  remove: string[];
}

/** `headers` / `routes[].headers`: on the request to the upstream, and on its answer. */
export interface HeaderRulesConfig {
  request: HeaderRules;
  response: HeaderRules;
}

export interface ClaimRuleConfig {
  rule: string;
  message?: string;
}

export interface RouteConfig {
  name: string;
  path: string;
  /** Only `path` itself (a trailing slash allowed), not the paths under it. */
  exact?: boolean;
  methods: string[] | null;
  upstream: string;
  public: boolean;
  scopes: string[];
  issuers: string[] | null;
  auth: 'bearer' | 'cookie' | 'cookie-only';
  claims: ClaimRuleConfig[];
  stepUp?: { acr?: string[]; amr?: string[]; maxAuthAge?: number };
  /**
   * Client addresses (IPs and CIDRs, `networks` names expanded) that may use the route; null or
   * absent: any address.
   */
  allowFrom?: string[] | null;
  /** Hosts (lowercase names, `*.` wildcards, IP literals) this route is reachable through; null or absent: any. */
  hosts?: string[] | null;
  /** Header rules for this route, the top-level `headers` merged in; null or absent: none. */
  headers?: HeaderRulesConfig | null;
  /**
   * Only sender-constrained tokens: `dpop` (cnf.jkt, RFC 9449), `mtls` (cnf.x5t#S256, RFC 8705),
   * `any` (either). The binding itself is checked by authentication on every request.
   */
  senderConstrained?: 'dpop' | 'mtls' | 'any';
  forwardToken: boolean;
  forwardClaims: Record<string, string>;
  rateLimits: string[];
  quotas: string[];
  maxConcurrent?: number;
  /** ms */
  timeout?: number;
  /** bytes */
  maxBodySize?: number;
  stripPrefix: boolean;
  /** WebSocket connections through this route (docs/websockets.md); null: refused. */
  websocket: WebSocketConfig | null;
  /** JSON request bodies checked before they are forwarded (docs/configuration.md, "Request bodies"); null or absent: not read. */
  requestBody?: RequestBodyConfig | null;
  /** The query checked against a JSON Schema (docs/configuration.md, "Queries"); null or absent: not read. */
  query?: { schema: object; schemaFile?: string } | null;
  /** The path parameters checked against a JSON Schema (docs/configuration.md, "Path parameters"); null or absent: not checked. */
  params?: { schema: object; schemaFile?: string } | null;
  /** The request's headers checked against a JSON Schema (docs/configuration.md, "Request headers"); null or absent: not checked. */
  requestHeaders?: { schema: object; schemaFile?: string } | null;
  /** The upstream's JSON answers checked against a schema per status (docs/configuration.md, "Answers"); null or absent: streamed unread. */
  responseBody?: ResponseBodyConfig | null;
}

/** A schema read at load: inline, from a file, or `{ $ref }` into a document. */
export interface LoadedSchema {
  schema: object;
  /** Absolute path of the file the schema was read from, for messages. */
  schemaFile?: string;
  /** The whole file a `file#/pointer` schema points into (an OpenAPI document, say). */
  document?: { uri: string; value: object; dialect: SchemaDialect };
}

/** `routes[].responseBody`: what the upstream's answers must be. */
export interface ResponseBodyConfig {
  /** By status: `200`, `2XX`, `default`. */
  schemas: Record<string, LoadedSchema>;
  /** A status with no schema (and no `default`): `pass` unread, or `refuse` (502). */
  unlisted: 'pass' | 'refuse';
  /** bytes: the longest answer held to be checked. */
  maxSize: number;
  /** Nesting levels of objects and arrays an answer may have. */
  maxDepth: number;
  /** `refuse` (default): a property marked writeOnly is refused in an answer; `ignore`: an annotation. */
  writeOnly: 'refuse' | 'ignore';
  /** `refuse`: 502 and nothing of the answer sent; `log`: a warning, the answer as it came. */
  onInvalid: 'refuse' | 'log';
}

/** `routes[].requestBody`: the JSON bodies a route accepts. */
export interface RequestBodyConfig {
  /**
   * The JSON Schema (inline, read from `schemaFile` at load, or `{ $ref }` into `document`);
   * null: a well-formed body is enough. A form's fields are checked against it as an object.
   */
  schema: object | null;
  /** Absolute path of the file the schema was read from, for messages. */
  schemaFile?: string;
  /** The whole file a `file#/pointer` schema points into (an OpenAPI document, say). */
  document?: { uri: string; value: object; dialect: SchemaDialect };
  /** `refuse` (default): a property marked readOnly is refused in a request; `ignore`: an annotation. */
  readOnly: 'refuse' | 'ignore';
  /** The methods whose requests are checked (uppercase). */
  methods: string[];
  /** A request on those methods without a body is refused. */
  required: boolean;
  /** Nesting levels of objects and arrays a body may have. */
  maxDepth: number;
  /** The kinds of body taken: `json` (application/json, application/…+json), `form` (application/x-www-form-urlencoded). */
  mediaTypes: ('json' | 'form')[];
}

/** `routes[].websocket`: what a WebSocket connection through the route may do once it is open. */
export interface WebSocketConfig {
  /** ms without a byte either way before the connection is closed. */
  idleTimeout: number;
  /** ms a connection may stay open at most. */
  maxDuration: number;
  /** Close the connection when the token it was opened with expires (default true). */
  closeAtTokenExpiry: boolean;
  /** Open connections on this route, per gatehouse process; 503 beyond. */
  maxConnections: number;
  /** Open connections on this route of one client (its token's subject, else its address), per process; 503 beyond. */
  maxConnectionsPerClient: number;
  /** bytes: the largest message from the client (payload over its fragments); larger → closed with 1009. */
  maxMessageSize: number;
  /** Frames a second a client may start (messages and control frames, as many at once); absent or null: no bound. */
  maxMessageRate?: number | null;
}

export interface RateLimitConfig {
  name: string;
  key: string;
  limit: number;
  /** ms */
  window: number;
  burst: number;
  store: 'memory' | 'redis';
  onStoreError: 'failOpen' | 'failClosed';
}

export interface QuotaConfig {
  name: string;
  key: string;
  limit: number;
  period: 'day' | 'month';
  store: 'memory' | 'redis';
  onStoreError: 'failOpen' | 'failClosed';
}

export interface PreAuthLimitConfig {
  limit: number;
  /** ms */
  window: number;
  burst: number;
  /** Default `memory`: a flood guard protects the CPU of each instance. */
  store: 'memory' | 'redis';
  onStoreError: 'failOpen' | 'failClosed';
}

/** `authFailureLimit` (docs/rate-limits.md, "Failed authentications"). */
export interface AuthFailureLimitConfig {
  limit: number;
  /** ms */
  window: number;
  /** ms */
  blockFor: number;
  store: 'memory' | 'redis';
  onStoreError: 'failOpen' | 'failClosed';
}

export interface TokenHandlerConfig {
  basePath: string;
  issuer: string;
  clientId: string;
  clientSecret?: string;
  redirectUri: string;
  postLogoutRedirectUri?: string;
  scope: string;
  trustedOrigins: string[];
  cookieKeys: string[];
  cookiePrefix: string;
  cookieDomain?: string;
  /** ms */
  loginStateTtl: number;
  /** ms */
  sessionTtl: number;
  extraParams: Record<string, string>;
  /** Lowercase header name carrying the CSRF token. */
  csrfHeader: string;
  tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post' | 'none';
}

export interface LimitsConfig {
  /** bytes */
  maxBodySize: number;
  /** bytes */
  maxHeaderSize: number;
  /** ms */
  headersTimeout: number;
  /** ms */
  requestTimeout: number;
  /** ms */
  keepAliveTimeout: number;
  maxConnections: number;
  /** ms */
  upstreamTimeout: number;
  /** ms */
  shutdownTimeout: number;
  /** ms; with several workers, a worker silent this long is killed and replaced (0: never). */
  workerUnresponsiveTimeout: number;
}

export interface GatewayTokenConfig {
  issuer: string;
  signingKeys: string[];
  keyDirectory?: string;
  /** ms */
  tokenTtl: number;
  algorithm: 'ES256' | 'ES384' | 'EdDSA' | 'RS256' | 'PS256';
  /** ms */
  keyRotationGrace: number;
  /** ms; generated keys are rotated when the newest is this old. Absent: never automatically. */
  keyRotationInterval?: number;
  realm: string;
}

/** How request paths are judged (see normalizeTarget and docs/configuration.md, "Path safety"). */
export interface PathsConfig {
  /**
   * Let `;` path parameters through (default false: refused with 400). Segments then match
   * routes without their parameters, as Tomcat, Jetty, Spring and JAX-RS map them.
   */
  allowSemicolons: boolean;
}

/** The `gateway` section: the minted-JWT issuer and gateway-wide request settings. */
export interface GatewayConfig extends GatewayTokenConfig {
  paths: PathsConfig;
  /**
   * A request asking to be taken as another method (`X-HTTP-Method-Override`, `_method`, …):
   * `refuse` (400; the default, also when absent) or `allow` (passed on unread).
   */
  methodOverride?: 'refuse' | 'allow';
}

/** `dpop`: how DPoP proofs (RFC 9449) for DPoP-bound tokens are checked (docs/tokens.md). */
export interface DpopConfig {
  /** Algorithms a proof may be signed with (asymmetric only). */
  algorithms: string[];
  /** ms: how old a proof (`iat`) may be. */
  proofMaxAge: number;
  /** ms: tolerance for the client's clock, both ways. */
  clockSkew: number;
  /** How many proofs (jti per key) this process remembers within their lifetime, at most. */
  maxProofs: number;
  /**
   * Server-provided nonces (RFC 9449 §9): every proof must carry a `nonce` gatehouse issued
   * within the last two `lifetime` windows. `secret` (≥ 32 characters) makes nonces valid across
   * gateways; without it, the processes of one `gatehouse start` share a key of their own.
   * Null: no nonces (the default).
   */
  nonce?: { lifetime: number; secret: string | null } | null;
}

/** `cors`: cross-origin calls from browser pages to bearer-token and public routes. */
export interface CorsConfig {
  /** Exact origins, normalized (`scheme://host[:port]`); empty with `anyOrigin`. */
  origins: string[];
  /** `origins: ["*"]`: any page may call. */
  anyOrigin: boolean;
  /** Lowercase; null: a preflight allows the headers the browser asks for. */
  allowHeaders: string[] | null;
  /** Lowercase, on top of gatehouse's own (www-authenticate, x-request-id, …). */
  exposeHeaders: string[];
  /** ms */
  maxAge: number;
}

export interface GatehouseConfig {
  /** Absolute path of the file this came from ('' when built in code). */
  file: string;
  /**
   * Where a key path sits in the file, for problems found after load (certificate files);
   * absent for a config built in code. Not enumerable.
   */
  readonly locate?: (path: readonly (string | number)[], message: string) => ConfigIssue;
  /** Directory relative paths (certs, keys) resolve against. */
  baseDir: string;
  listen: ListenerConfig[];
  /** `allowFrom`: the peer addresses the admin listener answers (networks names expanded); null: any. */
  admin: { host: string; port: number; enabled: boolean; allowFrom?: string[] | null } | null;
  workers: number | 'auto';
  trustedProxies: string[];
  /** Named address lists (`networks`), as given; routes hold them expanded. */
  networks: Record<string, string[]>;
  /** Top-level `headers` (every route's rules start from them), checked; null when absent. */
  headers?: HeaderRulesConfig | null;
  log: { level: string; accessLog: boolean };
  /** W3C Trace Context through the gateway (docs/configuration.md, "Tracing"); null or absent: traceparent passes untouched. */
  tracing?: TracingSettings | null;
  limits: LimitsConfig;
  issuers: IssuerConfig[];
  upstreams: UpstreamConfig[];
  routes: RouteConfig[];
  rateLimits: RateLimitConfig[];
  quotas: QuotaConfig[];
  /** Per-client-IP limit that runs before any token cryptography (see docs/rate-limits.md). */
  preAuthLimit?: PreAuthLimitConfig;
  /** Failed authentications per client IP, then a block of its requests to routes that need a token. */
  authFailureLimit?: AuthFailureLimitConfig | null;
  memoryStore: { maxKeys: number };
  cors?: CorsConfig;
  /** Headers an upstream's answers get when they lack them (docs/configuration.md, `securityHeaders`); absent: both on. */
  securityHeaders?: { contentTypeOptions: boolean; cacheControl: boolean };
  dpop: DpopConfig;
  redis?: {
    url: string;
    keyPrefix: string;
    /** ms */
    timeout: number;
    onError: 'failOpen' | 'failClosed';
    /** `url` names one node of a Redis Cluster. */
    cluster: boolean;
  };
  tokenHandler?: TokenHandlerConfig;
  gateway: GatewayConfig;
  tokenCache: { enabled: boolean; maxEntries: number };
}
