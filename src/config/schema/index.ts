import { ALL_FORWARDED_HEADERS } from '../types.js';
import { closed, duration, httpUrl, name, nonEmptyString, port, size, stringList, type JsonSchema } from './common.js';
import { ASYMMETRIC_ALGORITHMS, issuer } from './issuers.js';
import { authFailureLimit, memoryStore, preAuthLimit, quota, rateLimit, redis } from './limits.js';
import { clientTls, http2Settings, listenerTls } from './tls.js';
import { tokenHandler } from './token-handler.js';

export type { JsonSchema } from './common.js';

const listener: JsonSchema = closed(
  {
    name,
    host: nonEmptyString,
    port,
    tls: listenerTls,
    allowPlaintext: { type: 'boolean', description: 'Proxy over plain HTTP (only behind a TLS-terminating proxy).' },
    redirectToHttps: { type: 'boolean', description: 'Plain listener next to an HTTPS one: 308 to HTTPS (default true).' },
    httpsPort: port,
    http2: http2Settings,
  },
  ['port'],
);

const upstream: JsonSchema = closed(
  {
    name,
    url: httpUrl,
    targets: {
      type: 'array',
      items: {
        description: 'An http:// or https:// URL, or { url, weight }.',
        anyOf: [
          httpUrl,
          closed(
            {
              url: httpUrl,
              weight: { type: 'integer', minimum: 0, maximum: 1000, description: 'Its share of the requests against the other targets\' weights (default 1); 0 sends it none (drained).' },
            },
            ['url'],
            { description: 'A target with a weight: { url, weight }.' },
          ),
        ],
      },
      minItems: 1,
      maxItems: 32,
      uniqueItems: true,
      description: 'Several instances of one upstream (instead of url): the same scheme and path, different hosts or ports, each a URL or { url, weight }; requests go round robin (weighted when a weight is given), a target that cannot be reached is left out for downFor and its requests retried on another.',
    },
    healthCheck: closed(
      {
        path: { type: 'string', pattern: '^/[\\x21-\\x7e]*$', description: 'The path (and query) probed with a GET on each target\'s origin, e.g. /healthz.' },
        interval: { ...duration, description: 'Time between the end of one probe of a target and the next (default 10s).' },
        timeout: { ...duration, description: 'Time a probe may take, connection and answer head, before it fails (default 2s).' },
        unhealthyAfter: { type: 'integer', minimum: 1, maximum: 100, description: 'Failed probes in a row that take a target out of the rotation (default 2).' },
        healthyAfter: { type: 'integer', minimum: 1, maximum: 100, description: 'Passed probes in a row that bring it back (default 2).' },
        method: { enum: ['GET', 'HEAD'], description: 'The probe\'s method (default GET).' },
        expectStatus: {
          type: 'array',
          minItems: 1,
          uniqueItems: true,
          items: { anyOf: [{ type: 'integer', minimum: 100, maximum: 599 }, { type: 'string', pattern: '^[1-5]XX$' }], description: 'A status code (200) or a range (2XX).' },
          description: 'The statuses that pass (default [2XX, 3XX]): a 302 to a login page passes by default; [200] says the instance must answer itself.',
        },
      },
      ['path'],
      { description: 'Active health checks: a GET to each target every interval; a 2xx or 3xx passes, anything else fails.' },
    ),
    retryIdempotent: { type: 'boolean', description: 'Send a GET, HEAD or OPTIONS without a body once more (another target, or a new connection) when its connection broke before any answer (default false).' },
    downFor: { ...duration, description: 'How long a target that could not be reached (connection refused, connect timeout, TLS failure) is left out of the rotation (default 10s).' },
    timeout: duration,
    connectTimeout: duration,
    connections: { type: 'integer', minimum: 1, description: 'Max connections to this upstream (default 128).' },
    keepAliveTimeout: duration,
    tls: clientTls,
    audience: { ...nonEmptyString, description: 'aud of the JWTs gatehouse mints for this upstream.' },
    forwardedHeaders: {
      type: 'array',
      items: { enum: [...ALL_FORWARDED_HEADERS] },
      uniqueItems: true,
      description: 'Forwarding headers this upstream gets (default: the four X-Forwarded-For, -Proto, -Host and Forwarded; client-cert, RFC 9440, only when listed); [] sends none. A client\'s own values are dropped either way.',
    },
  },
  ['name'],
);

const claimRule: JsonSchema = {
  anyOf: [
    nonEmptyString,
    closed({ rule: nonEmptyString, message: nonEmptyString }, ['rule']),
  ],
  description: 'A CEL expression over `claims` and `request` that must be true.',
};

/** Header rules for one side of an exchange (docs/configuration.md, "Header rules"). */
const headerSide = closed({
  set: { type: 'object', additionalProperties: { type: 'string' }, description: 'Header name → value, replacing any header of that name.' },
  remove: { type: 'array', items: nonEmptyString, uniqueItems: true, description: 'Header names dropped.' },
});

const headerRules = closed(
  { request: headerSide, response: headerSide },
  [],
  { description: 'Headers set or removed on the request to the upstream and on its answer.' },
);

const route: JsonSchema = closed(
  {
    name,
    path: { type: 'string', pattern: '^/', description: 'Path prefix on segment boundaries; {param} segments allowed.' },
    exact: { type: 'boolean', description: 'Match this path only (a trailing slash allowed), not the paths under it (default false: a prefix).' },
    methods: { type: 'array', items: { type: 'string', pattern: '^[A-Z]+$' }, minItems: 1, uniqueItems: true, description: 'Methods this route takes (HEAD follows GET); without it, every method but TRACE.' },
    upstream: nonEmptyString,
    public: { type: 'boolean', description: 'The ONLY way a route is reachable without a token.' },
    scopes: stringList,
    issuers: { type: 'array', items: nonEmptyString, minItems: 1 },
    auth: { enum: ['bearer', 'cookie', 'cookie-only'] },
    claims: { type: 'array', items: claimRule },
    stepUp: closed({
      acr: { type: 'array', items: nonEmptyString, minItems: 1 },
      amr: { type: 'array', items: nonEmptyString, minItems: 1 },
      maxAuthAge: duration,
    }),
    hosts: {
      type: 'array',
      items: nonEmptyString,
      minItems: 1,
      uniqueItems: true,
      description: 'Hosts this route is reachable through (Host / :authority, any port): names, *.wildcards, IP literals; without it, any host.',
    },
    headers: headerRules,
    allowFrom: {
      type: 'array',
      items: nonEmptyString,
      minItems: 1,
      uniqueItems: true,
      description: 'Client addresses that may use this route: IPs, CIDRs or names of `networks`; anyone else gets 403 before the token is checked.',
    },
    senderConstrained: {
      enum: ['dpop', 'mtls', 'any'],
      description: 'Refuse bearer tokens: only DPoP-bound (dpop), certificate-bound (mtls) or either (any) tokens, with their proof.',
    },
    forwardToken: { type: 'boolean', description: 'Send the validated token upstream as Authorization (default true).' },
    forwardClaims: { type: 'object', additionalProperties: nonEmptyString, description: 'Header name → claim name.' },
    // A policy named twice would count each request twice.
    rateLimits: { ...stringList, uniqueItems: true, description: 'Names of rateLimits[] policies, each at most once.' },
    quotas: { ...stringList, uniqueItems: true, description: 'Names of quotas[] policies, each at most once.' },
    maxConcurrent: { type: 'integer', minimum: 1 },
    timeout: duration,
    maxBodySize: size,
    stripPrefix: { type: 'boolean' },
    query: closed(
      {
        schema: {
          description: 'A JSON Schema for the query as an object of parameter names to values (a name given twice: an array); values are text, coerced for integer, number, boolean and array types. A file (.json, .yaml, .yml, relative to this config file) or the schema itself.',
          anyOf: [nonEmptyString, { type: 'object' }],
        },
      },
      ['schema'],
      { description: 'The query checked before forwarding: 400 GH_ERR_REQUEST_QUERY_INVALID saying which parameter (docs/configuration.md, "Queries").' },
    ),
    params: closed(
      {
        schema: {
          description: "A JSON Schema for the path parameters as an object ({id} of /orders/{id} → { id: '7' }, decoded); values are text, coerced for integer, number and boolean types; its properties must name the path's parameters. A file (.json, .yaml, .yml, relative to this config file) or the schema itself.",
          anyOf: [nonEmptyString, { type: 'object' }],
        },
      },
      ['schema'],
      { description: 'The path parameters checked before forwarding: 400 GH_ERR_REQUEST_PARAMS_INVALID saying which (docs/configuration.md, "Path parameters").' },
    ),
    requestHeaders: closed(
      {
        schema: {
          description: "A JSON Schema for the request's headers as an object (lowercase names to values; a header sent more than once to an array of its values); values are text, coerced for integer, number and boolean types; property names in lowercase. A file (.json, .yaml, .yml, relative to this config file) or the schema itself.",
          anyOf: [nonEmptyString, { type: 'object' }],
        },
      },
      ['schema'],
      { description: 'The request\'s headers checked before forwarding: 400 GH_ERR_REQUEST_HEADERS_INVALID saying which (docs/configuration.md, "Request headers").' },
    ),
    requestBody: closed(
      {
        schema: {
          description: 'A JSON Schema the body must match: a file (.json, .yaml or .yml, relative to this config file; file#/pointer for a schema inside it, such as an OpenAPI document\'s #/components/schemas/NewOrder) or the schema itself; without it, any well-formed JSON.',
          anyOf: [nonEmptyString, { type: 'object' }],
        },
        methods: { type: 'array', items: { type: 'string', pattern: '^[A-Z]+$' }, minItems: 1, uniqueItems: true, description: 'The methods whose bodies are checked (default: POST, PUT, PATCH).' },
        required: { type: 'boolean', description: 'A request on those methods without a body is refused (default true).' },
        maxDepth: { type: 'integer', minimum: 1, maximum: 1000, description: 'Nesting levels of objects and arrays a body may have (default 32).' },
        readOnly: { enum: ['refuse', 'ignore'], description: 'refuse (default): a property the schema marks readOnly is refused in a request (and not required); ignore: readOnly is an annotation.' },
        mediaTypes: {
          type: 'array',
          items: { enum: ['json', 'form'] },
          minItems: 1,
          uniqueItems: true,
          description: 'The kinds of body taken (default [json]): json (application/json, application/…+json), form (application/x-www-form-urlencoded: its fields checked against the schema as an object, text read as the types it names); any other Content-Type is refused (415).',
        },
      },
      [],
      { description: 'Request bodies checked before they are forwarded: JSON (UTF-8, well-formed, no key twice, bounded depth) or forms (UTF-8, well-formed percent-encoding, no raw ";"), and the schema (docs/configuration.md, "Request bodies").' },
    ),
    responseBody: closed(
      {
        schemas: {
          type: 'object',
          minProperties: 1,
          propertyNames: { pattern: '^([2-5][0-9][0-9]|[2-5]XX|default)$' },
          additionalProperties: {
            description: "A JSON Schema the answer's JSON body must match: a file (.json, .yaml or .yml, relative to this config file; file#/pointer for a schema inside it, such as an OpenAPI operation's #/paths/~1orders~1{id}/get/responses/200/content/application~1json/schema) or the schema itself.",
            anyOf: [nonEmptyString, { type: 'object' }],
          },
          description: 'By status, as OpenAPI responses are: an exact code (200), a range (2XX) or default; the most specific one applies.',
        },
        unlisted: { enum: ['pass', 'refuse'], description: 'An answer whose status has no schema (and no default): pass (default) goes through unread; refuse: 502.' },
        maxSize: { ...size, description: 'The longest answer held to be checked (default 1mb); a longer one is refused (502), or with onInvalid: log passed on unchecked.' },
        maxDepth: { type: 'integer', minimum: 1, maximum: 1000, description: 'Nesting levels of objects and arrays an answer may have (default 64).' },
        writeOnly: { enum: ['refuse', 'ignore'], description: 'refuse (default): a property the schema marks writeOnly (a password) is refused in an answer (and not required); ignore: an annotation.' },
        onInvalid: { enum: ['refuse', 'log'], description: 'refuse (default): an answer that does not match is replaced by 502 GH_ERR_UPSTREAM_RESPONSE_INVALID, nothing of it sent; log: a warning, and the answer goes through.' },
      },
      ['schemas'],
      { description: "The upstream's JSON answers checked before the client gets them: UTF-8, well-formed, no key twice, bounded depth and size, and the schema of their status (docs/configuration.md, \"Answers\")." },
    ),
    websocket: {
      description: 'Let WebSocket connections through this route (true, or settings); absent or false: refused (docs/websockets.md).',
      anyOf: [
        { type: 'boolean' },
        closed({
          idleTimeout: { ...duration, description: 'Close a connection after this long without a byte either way (default 5m).' },
          maxDuration: { ...duration, description: 'Close a connection after this long whatever it does (default 24h).' },
          closeAtTokenExpiry: { type: 'boolean', description: 'Close a connection when the token it was opened with expires (default true).' },
          maxConnections: { type: 'integer', minimum: 1, description: 'Open connections on this route per gatehouse process; 503 beyond (default 1000).' },
          maxConnectionsPerClient: {
            type: 'integer',
            minimum: 1,
            description: "Open connections on this route of one client (its token's subject, else its address) per gatehouse process; 503 beyond (default 50).",
          },
          maxMessageSize: { ...size, description: 'The largest message a client may send (payload bytes over its fragments); larger closes the connection with 1009 (default 1mb).' },
          maxMessageRate: { type: 'integer', minimum: 1, description: 'Messages (and control frames) a second a client may send on one connection, as many at once; more closes it with 1008 (default: no bound).' },
        }),
      ],
    },
  },
  ['name', 'path', 'upstream'],
);

const limits: JsonSchema = closed({
  maxBodySize: size,
  maxHeaderSize: size,
  headersTimeout: duration,
  requestTimeout: duration,
  keepAliveTimeout: duration,
  maxConnections: { type: 'integer', minimum: 1 },
  upstreamTimeout: duration,
  shutdownTimeout: duration,
  workerUnresponsiveTimeout: duration,
});

const gateway: JsonSchema = closed({
  issuer: { ...nonEmptyString, description: 'iss of the JWTs gatehouse mints (phantom tokens).' },
  signingKeys: { type: 'array', items: nonEmptyString, description: 'PEM or JWK files; the first signs.' },
  keyDirectory: { ...nonEmptyString, description: 'Where generated signing keys are persisted.' },
  tokenTtl: duration,
  algorithm: { enum: ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'] },
  keyRotationGrace: duration,
  keyRotationInterval: { ...duration, description: 'Generated keys only: rotate when the signing key is this old (off by default).' },
  realm: nonEmptyString,
  methodOverride: {
    enum: ['refuse', 'allow'],
    description:
      'refuse (default): a request with X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override or a _method query parameter naming another method is refused (400): gatehouse authorizes the method it sees, an upstream that honours the override would act on another. allow: passed on unread (only for upstreams that honour none of them).',
  },
  paths: closed({
    allowSemicolons: {
      type: 'boolean',
      description:
        'Let ";" path parameters through (default false: 400). Segments then match routes without them, as Tomcat, Jetty, Spring and JAX-RS map them; ".", ".." or empty segments with parameters stay refused.',
    },
  }),
});

/** HTTP header field names (RFC 9110 tokens). */
const headerNames: JsonSchema = { type: 'array', items: { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" } };

/** CORS for bearer-token and public routes (docs/configuration.md, `cors`). */
const cors = closed(
  {
    origins: {
      type: 'array',
      items: nonEmptyString,
      minItems: 1,
      uniqueItems: true,
      description: 'Exact origins (scheme://host[:port]) whose pages may call the routes; ["*"] for any (no credentials are involved: bearer tokens are sent by the page itself).',
    },
    allowHeaders: { ...headerNames, description: 'Request headers a preflight allows (Authorization and Content-Type always). Unset: the headers the browser asks for.' },
    exposeHeaders: { ...headerNames, description: 'Response headers a page may read, beside WWW-Authenticate, X-Request-Id, Retry-After and the RateLimit headers.' },
    maxAge: { ...duration, description: 'How long a browser may keep a preflight answer (default 10m; at most 1d).' },
  },
  ['origins'],
);

/** DPoP proofs for DPoP-bound tokens (docs/tokens.md, "Sender-constrained tokens"). */
const dpop = closed({
  algorithms: { type: 'array', items: { enum: [...ASYMMETRIC_ALGORITHMS] }, minItems: 1, uniqueItems: true, description: 'Algorithms a DPoP proof may be signed with (default ES256, ES384, PS256, RS256, EdDSA, Ed25519).' },
  proofMaxAge: { ...duration, description: 'How old a proof (its iat) may be (default 60s; 1s to 10m).' },
  clockSkew: { ...duration, description: "Tolerance for the client's clock (default 5s; at most 5m)." },
  maxProofs: { type: 'integer', minimum: 1000, description: 'Proofs remembered against replay per process (default 200000); when full, new proofs get 503.' },
  nonce: {
    anyOf: [
      { type: 'boolean' },
      closed({
        lifetime: { ...duration, description: 'How long one nonce window lasts (default 5m; 10s to 1h); a nonce is good for this window and the next.' },
        secret: { type: 'string', minLength: 32, description: 'The key nonces are made with (at least 32 characters, e.g. ${DPOP_NONCE_SECRET}): the same on every gateway that shares clients.' },
      }),
    ],
    description: 'Require server-provided nonces in DPoP proofs (RFC 9449 §9): true, or { lifetime, secret }.',
  },
});

/** The JSON Schema of a gatehouse config file (published as schema/gatehouse.schema.json). */
export const configSchema: JsonSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://gatehouse.dev/schema/gatehouse.schema.json',
  title: 'gatehouse configuration',
  ...closed(
    {
      $schema: { type: 'string' },
      listen: { anyOf: [listener, { type: 'array', items: listener, minItems: 1 }] },
      admin: closed({
        host: nonEmptyString,
        port,
        enabled: { type: 'boolean' },
        allowFrom: {
          type: 'array',
          items: nonEmptyString,
          minItems: 1,
          uniqueItems: true,
          description: 'Addresses that may use the admin listener (/metrics, /readyz, …): IPs, CIDRs or names of `networks`; anyone else gets 403.',
        },
      }),
      workers: { anyOf: [{ type: 'integer', minimum: 1 }, { const: 'auto' }] },
      trustedProxies: { type: 'array', items: nonEmptyString, description: 'IPs or CIDRs whose X-Forwarded-* are believed.' },
      headers: headerRules,
      networks: {
        type: 'object',
        additionalProperties: { type: 'array', items: nonEmptyString, minItems: 1, uniqueItems: true },
        description: 'Named lists of IPs and CIDRs, for routes[].allowFrom.',
      },
      log: closed({ level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }, accessLog: { type: 'boolean' } }),
      tracing: closed(
        {
          trustIncoming: { type: 'boolean', description: "Continue a client's trace (its valid traceparent and its tracestate); false: every request starts a new trace (default true)." },
          sampled: { type: 'boolean', description: 'The sampled flag of the traces gatehouse starts (default true).' },
        },
        [],
        { description: 'W3C Trace Context: a traceparent on every request to an upstream (the client\'s, checked, or a new one) and trace_id in the access log.' },
      ),
      limits,
      issuers: { type: 'array', items: issuer },
      upstreams: { type: 'array', items: upstream, minItems: 1 },
      routes: { type: 'array', items: route, minItems: 1 },
      rateLimits: { type: 'array', items: rateLimit },
      quotas: { type: 'array', items: quota },
      preAuthLimit,
      authFailureLimit,
      memoryStore,
      redis,
      tokenHandler,
      cors,
      securityHeaders: closed(
        {
          contentTypeOptions: { type: 'boolean', description: 'X-Content-Type-Options: nosniff on every upstream answer that has none (default true).' },
          cacheControl: { type: 'boolean', description: 'Cache-Control: no-store on the answer to a request that carried a token, when the upstream gives none (default true).' },
        },
        [],
        { description: 'Headers gatehouse adds to an upstream\'s answers that lack them (docs/configuration.md, "securityHeaders"); the upstream\'s own and header rules win.' },
      ),
      dpop,
      gateway,
      tokenCache: closed({ enabled: { type: 'boolean' }, maxEntries: { type: 'integer', minimum: 1 } }),
    },
    ['listen', 'upstreams', 'routes'],
  ),
};
