import type { RequestTrace } from '../telemetry/trace-context.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { PeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import type { GatehouseError } from '../errors.js';
import type { CompiledRoute } from '../route/compile.js';

/**
 * Who the request is from, once a credential has been validated. The first authenticator
 * that produces one wins.
 */
export interface Principal {
  /** The configured issuer `name` (not the `iss` URL). */
  readonly issuer: string;
  readonly subject: string | undefined;
  /** Validated claims (JWT payload, or the introspection response). */
  readonly claims: Readonly<Record<string, unknown>>;
  /** From `scope` (space-separated) or `scp` (array). */
  readonly scopes: ReadonlySet<string>;
  /** How the credential was validated. */
  readonly kind: 'jwt' | 'introspection';
  /** The JWT that goes upstream as `Authorization: Bearer` (the validated JWT, or the one minted). */
  readonly upstreamToken: string;
  /**
   * `Bearer <upstreamToken>`, built once with the principal (`bearerAuthorization` in
   * authn/bearer.ts): a cache hit forwards it as it is, instead of concatenating (and then
   * copying) ~600 characters per request (issue 8).
   */
  readonly upstreamAuthorization: string;
}

/**
 * The per-request state every stage reads and writes. One object per request, created by the
 * server and owned by the runner; stages do not keep references to it.
 */
export interface RequestContext {
  /** X-Request-Id: the client's (when it is a sane token) or one made here. */
  readonly id: string;
  readonly method: string;
  /** The normalized path: exactly what routing decided on and what the upstream receives. */
  readonly path: string;
  /**
   * The normalized path as requested, before a `stripPrefix` route took its prefix off: what a
   * DPoP proof's `htu` names.
   */
  readonly targetPath: string;
  /** The raw query string including the leading `?`, or ''. */
  readonly query: string;
  readonly headers: IncomingHttpHeaders;
  /** The client's headers as received, `[name, value, …]` (duplicates kept: two Authorization headers are refused). */
  readonly rawHeaders?: readonly string[];
  /** The client's address as decided by the trusted-proxy rules. */
  readonly clientIp: string;
  /** The address of the TCP peer. */
  readonly peerIp: string;
  /** The peer is one of `trustedProxies`: its forwarding headers are believed (the runner's one decision). */
  readonly peerTrusted: boolean;
  /** Whether the client reached gatehouse over TLS (or through a trusted TLS-terminating proxy). */
  readonly secure: boolean;
  /** The verified client certificate, when the listener asked for one. */
  readonly clientCertificate: PeerCertificate | null;
  readonly startedAt: number;
  route: CompiledRoute | null;
  /** `{param}` values captured by the route path. */
  params: Record<string, string>;
  /** The bearer token, once a credential stage has found one (Authorization or token-handler cookie). */
  token: string | null;
  /** Where `token` came from. */
  tokenSource: 'header' | 'cookie' | null;
  /**
   * The `Authorization` scheme the token came in: `DPoP` (RFC 9449 §7.1) needs a DPoP-bound
   * token and a proof; `Bearer` must not carry a DPoP-bound one. Null for a cookie's token.
   */
  tokenScheme: 'Bearer' | 'DPoP' | null;
  principal: Principal | null;
  /** The part of the path a `stripPrefix` route took off ('' otherwise): put back on an upstream's `Location`. */
  strippedPrefix: string;
  /** Extra headers for the upstream request (e.g. forwardClaims); names are stripped from the client's first. */
  upstreamHeaders: [string, string][];
  /**
   * Headers on the answer whatever it is: the listener's (HSTS) first, set by the runner, then
   * those stages add (RateLimit, CORS). Error answers and own handlers write them; on a
   * forwarded answer each replaces the upstream's header of that name (`Vary` is merged).
   */
  responseHeaders: [string, string][];
  /** Undo hooks (e.g. concurrency slots) run once when the response ends. */
  onFinish: (() => void)[];
  log: Logger;
  /** Filled by forward: ms spent waiting for the upstream's response head. */
  upstreamLatency: number | undefined;
  /** The W3C trace of this request (`tracing`); null without that section. */
  trace?: RequestTrace | null;
  /** The target that answered (or was last tried), for an upstream with several `targets`; undefined otherwise. */
  upstreamTarget?: string | undefined;
  /** What decided the request (for the access log). */
  decision: string;
}

/**
 * A stage: returns `null` to continue, or the denial to answer with. Bugs are thrown.
 * Hot path: a stage is a plain function built at compile time, never a per-request closure.
 */
export type Stage = (ctx: RequestContext) => GatehouseError | null | Promise<GatehouseError | null>;

/**
 * Several stages of one slot as one, in order, the first denial winning; a single stage is used
 * as it is. Synchronous for as long as the stages answer synchronously: a promise is awaited only
 * where a stage returns one (so a slot holding, say, CORS headers and an in-memory pre-auth
 * limit costs no promise per request).
 *
 * @example
 * ```ts
 * const preAuth = composeStages([corsStage, preAuthLimitStage]);
 * ```
 */
export function composeStages(stages: readonly Stage[]): Stage | null {
  if (stages.length === 0) return null;
  if (stages.length === 1) return stages[0]!;
  const all = stages.slice();
  const from = (ctx: RequestContext, start: number): GatehouseError | null | Promise<GatehouseError | null> => {
    for (let i = start; i < all.length; i++) {
      const denial = all[i]!(ctx);
      if (denial === null) continue;
      if (typeof (denial as Promise<unknown>).then === 'function') {
        return (denial as Promise<GatehouseError | null>).then((d) => d ?? from(ctx, i + 1));
      }
      return denial;
    }
    return null;
  };
  return function composed(ctx: RequestContext) {
    return from(ctx, 0);
  };
}

/** What an authenticator says about a credential. */
export type AuthOutcome =
  | { readonly kind: 'principal'; readonly principal: Principal }
  | { readonly kind: 'not-applicable' }
  | { readonly kind: 'denied'; readonly error: GatehouseError };

/** The singleton for "not my kind of credential"; the next authenticator tries. */
export const NOT_APPLICABLE: AuthOutcome = Object.freeze({ kind: 'not-applicable' });

/**
 * Validates a bearer token for a route. `jwt` and `introspection` implement it.
 *
 * @example
 * ```ts
 * const outcome = await authenticator.authenticate(token, ctx);
 * if (outcome.kind === 'principal') ctx.principal = outcome.principal;
 * ```
 */
export interface Authenticator {
  readonly name: string;
  authenticate(token: string, ctx: RequestContext): AuthOutcome | Promise<AuthOutcome>;
}
