/**
 * The one error hierarchy of gatehouse. Every denial a stage returns and every failure the
 * runner catches becomes one of these, and one responder (src/respond/problem.ts) renders it.
 *
 * Codes are `GH_ERR_<AREA>_<WHAT>`, stable forever and never reused; docs/errors.md lists them.
 *
 * @example
 * ```ts
 * return { ok: false, error: new InvalidToken('GH_ERR_JWT_EXPIRED', 'the access token has expired') };
 * ```
 */

/** Every error code gatehouse can answer with. Add, never rename or reuse. */
export type GatehouseErrorCode =
  // routing and request shape
  | 'GH_ERR_ROUTE_NOT_FOUND'
  | 'GH_ERR_ROUTE_METHOD_NOT_ALLOWED'
  | 'GH_ERR_REQUEST_BAD_PATH'
  | 'GH_ERR_REQUEST_BAD_HOST'
  | 'GH_ERR_REQUEST_MISDIRECTED'
  | 'GH_ERR_CORS_ORIGIN_NOT_ALLOWED'
  | 'GH_ERR_REQUEST_BAD_TARGET'
  | 'GH_ERR_REQUEST_BODY_TOO_LARGE'
  | 'GH_ERR_REQUEST_BODY_INVALID'
  | 'GH_ERR_REQUEST_QUERY_INVALID'
  | 'GH_ERR_REQUEST_PARAMS_INVALID'
  | 'GH_ERR_REQUEST_HEADERS_INVALID'
  | 'GH_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE'
  | 'GH_ERR_REQUEST_HEADERS_TOO_LARGE'
  | 'GH_ERR_REQUEST_TIMEOUT'
  | 'GH_ERR_REQUEST_BAD_HEADER'
  | 'GH_ERR_REQUEST_METHOD_OVERRIDE'
  | 'GH_ERR_REQUEST_EXPECTATION_FAILED'
  | 'GH_ERR_REQUEST_UPGRADE_WITH_BODY'
  | 'GH_ERR_WEBSOCKET_NOT_ALLOWED'
  | 'GH_ERR_WEBSOCKET_LIMIT_EXCEEDED'
  | 'GH_ERR_PLAINTEXT_CREDENTIALS'
  | 'GH_ERR_HTTPS_REQUIRED'
  // authentication
  | 'GH_ERR_AUTH_MISSING_TOKEN'
  | 'GH_ERR_AUTH_MALFORMED_HEADER'
  | 'GH_ERR_AUTH_MULTIPLE_CREDENTIALS'
  | 'GH_ERR_AUTH_TOKEN_IN_QUERY'
  | 'GH_ERR_AUTH_KEYS_UNAVAILABLE'
  | 'GH_ERR_JWT_MALFORMED'
  | 'GH_ERR_JWT_TOO_LARGE'
  | 'GH_ERR_JWT_ALG_NOT_ALLOWED'
  | 'GH_ERR_JWT_HEADER_NOT_ALLOWED'
  | 'GH_ERR_JWT_CRIT_UNSUPPORTED'
  | 'GH_ERR_JWT_TYP_INVALID'
  | 'GH_ERR_JWT_KID_UNKNOWN'
  | 'GH_ERR_JWT_KEY_UNUSABLE'
  | 'GH_ERR_JWT_SIGNATURE_INVALID'
  | 'GH_ERR_JWT_ISSUER_UNKNOWN'
  | 'GH_ERR_JWT_ISSUER_NOT_ACCEPTED'
  | 'GH_ERR_JWT_AUDIENCE_INVALID'
  | 'GH_ERR_JWT_EXPIRED'
  | 'GH_ERR_JWT_NOT_YET_VALID'
  | 'GH_ERR_JWT_ISSUED_IN_FUTURE'
  | 'GH_ERR_JWT_TOO_OLD'
  | 'GH_ERR_JWT_CLAIM_INVALID'
  | 'GH_ERR_JWT_CLAIM_MISSING'
  | 'GH_ERR_JWT_SENDER_CONSTRAINED'
  | 'GH_ERR_DPOP_PROOF_MISSING'
  | 'GH_ERR_DPOP_PROOF_INVALID'
  | 'GH_ERR_DPOP_PROOF_REPLAYED'
  | 'GH_ERR_DPOP_KEY_MISMATCH'
  | 'GH_ERR_DPOP_SCHEME_MISMATCH'
  | 'GH_ERR_DPOP_REPLAY_CACHE_FULL'
  | 'GH_ERR_DPOP_REPLAY_STORE_UNAVAILABLE'
  | 'GH_ERR_DPOP_NONCE_REQUIRED'
  | 'GH_ERR_INTROSPECTION_INACTIVE'
  | 'GH_ERR_INTROSPECTION_UNAVAILABLE'
  | 'GH_ERR_INTROSPECTION_INVALID_RESPONSE'
  | 'GH_ERR_INTROSPECTION_EXPIRED'
  | 'GH_ERR_INTROSPECTION_NOT_YET_VALID'
  | 'GH_ERR_INTROSPECTION_AUDIENCE_INVALID'
  | 'GH_ERR_INTROSPECTION_ISSUER_INVALID'
  | 'GH_ERR_INTROSPECTION_TOKEN_TYPE_INVALID'
  | 'GH_ERR_INTROSPECTION_TOKEN_MALFORMED'
  | 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED'
  | 'GH_ERR_COOKIE_INVALID'
  | 'GH_ERR_COOKIE_ORIGIN_NOT_ALLOWED'
  | 'GH_ERR_COOKIE_CSRF_INVALID'
  | 'GH_ERR_TOKEN_HANDLER_REQUEST'
  | 'GH_ERR_TOKEN_HANDLER_UPSTREAM'
  | 'GH_ERR_TOKEN_HANDLER_STATE_INVALID'
  | 'GH_ERR_TOKEN_HANDLER_AUTHORIZATION_FAILED'
  | 'GH_ERR_TOKEN_HANDLER_ID_TOKEN_INVALID'
  | 'GH_ERR_TOKEN_HANDLER_SESSION_EXPIRED'
  // authorization
  | 'GH_ERR_AUTHZ_INSUFFICIENT_SCOPE'
  | 'GH_ERR_AUTHZ_CLAIM_DENIED'
  | 'GH_ERR_AUTHZ_STEP_UP_REQUIRED'
  | 'GH_ERR_AUTHZ_SENDER_CONSTRAINT_REQUIRED'
  | 'GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED'
  // limits
  | 'GH_ERR_LIMIT_RATE_EXCEEDED'
  | 'GH_ERR_LIMIT_QUOTA_EXCEEDED'
  | 'GH_ERR_LIMIT_AUTH_FAILURES'
  | 'GH_ERR_LIMIT_CONCURRENCY_EXCEEDED'
  | 'GH_ERR_LIMIT_STORE_UNAVAILABLE'
  // upstream
  | 'GH_ERR_UPSTREAM_CONNECT'
  | 'GH_ERR_UPSTREAM_TIMEOUT'
  | 'GH_ERR_UPSTREAM_FAILED'
  | 'GH_ERR_UPSTREAM_RESPONSE_INVALID'
  // gateway state
  | 'GH_ERR_NOT_READY'
  | 'GH_ERR_INTERNAL';

/** OAuth 2.0 bearer-token error values (RFC 6750 §3.1, RFC 9470 §3, RFC 9449 §7.1). */
export type OAuthErrorValue =
  | 'invalid_request'
  | 'invalid_token'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'insufficient_scope'
  | 'insufficient_user_authentication';

export interface GatehouseErrorOptions {
  /** Logged only, never sent to the client. */
  detail?: string;
  cause?: unknown;
  /** Extra response headers (e.g. `Allow`, `Retry-After`). */
  headers?: Record<string, string>;
  /** The challenge is `WWW-Authenticate: DPoP` (RFC 9449 §7.1) whatever scheme the request used. */
  dpop?: boolean;
}

/**
 * Base class: `status` is the HTTP status, `description` the public text, `detail` the private one.
 *
 * @example
 * ```ts
 * throw new GatehouseError('GH_ERR_INTERNAL', 500, 'internal error', { detail: 'x was null' });
 * ```
 */
export class GatehouseError extends Error {
  readonly code: GatehouseErrorCode;
  readonly status: number;
  readonly description: string;
  readonly detail: string | undefined;
  readonly headers: Record<string, string> | undefined;
  /** When set, the response carries `WWW-Authenticate: Bearer` with this `error`. */
  readonly oauthError: OAuthErrorValue | undefined;
  /** Whether a `WWW-Authenticate: Bearer` challenge goes with the answer (401s and scope 403s). */
  readonly challenge: boolean;
  /** The challenge's scheme is DPoP (a proof or DPoP binding was refused). */
  readonly dpop: boolean;

  constructor(
    code: GatehouseErrorCode,
    status: number,
    description: string,
    options: GatehouseErrorOptions & { oauthError?: OAuthErrorValue; challenge?: boolean } = {},
  ) {
    // A denial is an answer, not a bug: capturing its stack costs microseconds per refused
    // request (floods of bad tokens). Bugs keep their stack through `cause`.
    const stackLimit = Error.stackTraceLimit;
    if (code !== 'GH_ERR_INTERNAL') Error.stackTraceLimit = 0;
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    Error.stackTraceLimit = stackLimit;
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.description = description;
    this.detail = options.detail;
    this.headers = options.headers;
    this.oauthError = options.oauthError;
    this.challenge = options.challenge ?? false;
    this.dpop = options.dpop ?? false;
  }

  /** The short title of the problem type (RFC 9457 `title`). */
  get title(): string {
    return STATUS_TITLES[this.status] ?? 'Error';
  }
}

const STATUS_TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  417: 'Expectation Failed',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** 401 with a bare `WWW-Authenticate: Bearer` challenge and no `error` (RFC 6750 §3.1). */
export class MissingToken extends GatehouseError {
  constructor(description = 'an access token is required', options: GatehouseErrorOptions = {}) {
    super('GH_ERR_AUTH_MISSING_TOKEN', 401, description, { ...options, challenge: true });
  }
}

/** 400 `invalid_request`: the request is malformed (two credentials, a token in the query, …). */
export class InvalidRequest extends GatehouseError {
  constructor(code: GatehouseErrorCode, description: string, options: GatehouseErrorOptions & { challenge?: boolean } = {}) {
    super(code, 400, description, { ...options, oauthError: options.challenge === false ? undefined : 'invalid_request', challenge: options.challenge ?? true });
  }
}

/** 401 `invalid_token`: expired, revoked, malformed, or invalid for another reason. */
export class InvalidToken extends GatehouseError {
  constructor(code: GatehouseErrorCode, description: string, options: GatehouseErrorOptions = {}) {
    super(code, 401, description, { ...options, oauthError: 'invalid_token', challenge: true });
  }
}

/**
 * 401 `invalid_dpop_proof` (RFC 9449 §7.1): a DPoP proof was missing, invalid or replayed;
 * answered with a `WWW-Authenticate: DPoP` challenge. `detail` says which check failed.
 */
export class InvalidDpopProof extends GatehouseError {
  constructor(code: GatehouseErrorCode, detail: string) {
    super(code, 401, 'the DPoP proof is not valid', { detail, oauthError: 'invalid_dpop_proof', challenge: true, dpop: true });
  }
}

/**
 * 401 `use_dpop_nonce` (RFC 9449 §9): the proof carries no nonce, or one gatehouse did not
 * issue or that has expired; `DPoP-Nonce` gives the one to use.
 */
export class DpopNonceRequired extends GatehouseError {
  constructor(nonce: string, detail: string) {
    super('GH_ERR_DPOP_NONCE_REQUIRED', 401, 'the DPoP proof must carry the nonce the gateway provides', {
      detail,
      oauthError: 'use_dpop_nonce',
      challenge: true,
      dpop: true,
      headers: { 'dpop-nonce': nonce },
    });
  }
}

/** 403 `insufficient_scope`, with the scopes the route needs. */
export class InsufficientScope extends GatehouseError {
  readonly scope: string;
  constructor(scope: readonly string[], options: GatehouseErrorOptions = {}) {
    super('GH_ERR_AUTHZ_INSUFFICIENT_SCOPE', 403, 'the access token lacks a required scope', {
      ...options,
      oauthError: 'insufficient_scope',
      challenge: true,
    });
    this.scope = scope.join(' ');
  }
}

/** 401 `insufficient_user_authentication` (RFC 9470): step up with `acr_values` / `max_age`. */
export class StepUpRequired extends GatehouseError {
  readonly acrValues: string | undefined;
  readonly maxAge: number | undefined;
  constructor(acrValues: readonly string[] | undefined, maxAge: number | undefined, options: GatehouseErrorOptions = {}) {
    super('GH_ERR_AUTHZ_STEP_UP_REQUIRED', 401, 'a stronger authentication is required', {
      ...options,
      oauthError: 'insufficient_user_authentication',
      challenge: true,
    });
    this.acrValues = acrValues && acrValues.length > 0 ? acrValues.join(' ') : undefined;
    this.maxAge = maxAge;
  }
}

/** 403: a claim rule of the route denied the request (ownership, tenant, …). */
export class ClaimDenied extends GatehouseError {
  constructor(description = 'the request is not allowed for this token', options: GatehouseErrorOptions = {}) {
    super('GH_ERR_AUTHZ_CLAIM_DENIED', 403, description, options);
  }
}

/** 429 with `Retry-After` (seconds, rounded up). */
export class RateLimited extends GatehouseError {
  readonly retryAfter: number;
  constructor(
    code: 'GH_ERR_LIMIT_RATE_EXCEEDED' | 'GH_ERR_LIMIT_QUOTA_EXCEEDED' | 'GH_ERR_LIMIT_AUTH_FAILURES',
    retryAfterSeconds: number,
    options: GatehouseErrorOptions = {},
  ) {
    const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
    const description =
      code === 'GH_ERR_LIMIT_QUOTA_EXCEEDED' ? 'the quota is used up' : code === 'GH_ERR_LIMIT_AUTH_FAILURES' ? 'too many failed authentications from this address' : 'too many requests';
    super(code, 429, description, {
      ...options,
      headers: { ...options.headers, 'retry-after': String(retryAfter) },
    });
    this.retryAfter = retryAfter;
  }
}

/** 503: the gateway cannot decide safely right now (no keys yet, store down with failClosed, …). */
export class ServiceUnavailable extends GatehouseError {
  constructor(code: GatehouseErrorCode, description: string, options: GatehouseErrorOptions & { retryAfter?: number } = {}) {
    super(code, 503, description, {
      ...options,
      headers: options.retryAfter === undefined ? options.headers : { ...options.headers, 'retry-after': String(options.retryAfter) },
    });
  }
}

/** 502 (connect or protocol failure) or 504 (timeout) from the upstream. */
export class UpstreamFailed extends GatehouseError {
  constructor(code: 'GH_ERR_UPSTREAM_CONNECT' | 'GH_ERR_UPSTREAM_TIMEOUT' | 'GH_ERR_UPSTREAM_FAILED' | 'GH_ERR_UPSTREAM_RESPONSE_INVALID', options: GatehouseErrorOptions = {}) {
    super(
      code,
      code === 'GH_ERR_UPSTREAM_TIMEOUT' ? 504 : 502,
      code === 'GH_ERR_UPSTREAM_TIMEOUT'
        ? 'the upstream did not answer in time'
        : code === 'GH_ERR_UPSTREAM_RESPONSE_INVALID'
          ? "the upstream's answer is not one this route lets through"
          : 'the upstream could not be reached',
      options,
    );
  }
}

/** A plain HTTP-level refusal that is not about tokens (404, 405, 400 bad path, 413, 431, 408). */
export class RequestRejected extends GatehouseError {
  constructor(code: GatehouseErrorCode, status: number, description: string, options: GatehouseErrorOptions = {}) {
    super(code, status, description, options);
  }
}

/** A typed stage result: denials are returned, bugs are thrown. */
export type Result<T, E extends GatehouseError = GatehouseError> = { ok: true; value: T } | { ok: false; error: E };

/** Wrap an unknown thrown value as a 500 that exposes nothing. */
export function internalError(cause: unknown): GatehouseError {
  if (cause instanceof GatehouseError) return cause;
  return new GatehouseError('GH_ERR_INTERNAL', 500, 'internal error', {
    cause,
    detail: cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause),
  });
}

/** A configuration error: names the file, the line and the key path. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatConfigIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** One problem in a config file. `line` is 1-based; 0 when unknown. */
export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  /** Key path like `routes[3].scopes`. */
  path: string;
  message: string;
}

/** `gatehouse.yaml:41:5 routes[3].scopes must be an array of strings` */
export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  return `${where} ${issue.path || '(root)'} ${issue.message}`;
}
