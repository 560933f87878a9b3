import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { GatehouseConfig, RouteConfig } from '../config/types.js';
import type { ConfigIssue } from '../errors.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { RequestContext, Stage } from './context.js';

/** What every area runtime gets when a plan is compiled. */
export interface GatewayServices {
  readonly log: Logger;
  readonly metrics: Metrics;
  /** ms since epoch; injectable for tests. */
  readonly now: () => number;
}

/** The stages one area contributes to one route; `null` = absent (skipped, zero cost). */
export interface RouteStages {
  /** Runs before any token cryptography (pre-auth IP limit). */
  preAuth?: Stage | null;
  /** Finds the token: `Authorization: Bearer`, or the token-handler cookie (with Origin/CSRF checks). */
  credential?: Stage | null;
  /** Validates the token and sets `ctx.principal`. */
  authenticate?: Stage | null;
  /** Scopes, claim rules, step-up. */
  authorize?: Stage | null;
  /** Rate limits, quotas, concurrency (after authentication, keyed by validated claims). */
  limit?: Stage | null;
  /** Told of a refusal that counts as a failed authentication (`authFailureLimit`). */
  onAuthFailure?: ((ctx: RequestContext) => void) | null;
}

/** Health of one area for `/readyz`. */
export interface Readiness {
  ready: boolean;
  /** Shown on /readyz: e.g. `{ issuers: { main: 'keys from 12s ago; last refresh failed' } }`. */
  details?: Record<string, unknown>;
}

/**
 * One area of the gateway (authentication, limits, token handler, …), built once per config.
 * A reload builds a new runtime and closes the old one after the swap.
 */
export interface AreaRuntime {
  readonly name: string;
  /** Config problems found while compiling (bad CEL expressions, unreadable key files, …). */
  readonly issues?: readonly ConfigIssue[];
  /** Build this area's stages for a route. Called once per route at compile time. */
  stagesFor?(route: RouteConfig, index: number): RouteStages;
  /**
   * Handle a request that is not proxied (e.g. the token-handler agent endpoints).
   * Return true when handled (the response is written). Runs before route matching. An answer
   * carries `ctx.responseHeaders` (the listener's HSTS first) and `x-request-id: ctx.id`: the
   * runner stages nothing on the response (`sendProblem` takes both).
   */
  handle?(ctx: RequestContext, req: IncomingMessage, res: ServerResponse): boolean | Promise<boolean>;
  /**
   * Runs for a request no route takes, before its 404 or 405 is written: adds to
   * `ctx.responseHeaders` what that answer should carry (CORS, so a page can read the 404).
   * Its result is ignored: the request is refused whatever it returns.
   */
  unmatched?: Stage;
  /** Admin-listener endpoints (e.g. `/.well-known/jwks.json`): return true when handled. */
  handleAdmin?(req: IncomingMessage, res: ServerResponse): boolean | Promise<boolean>;
  /** Start background work (key fetches, connections). Must not throw for a dead dependency. */
  start?(): Promise<void>;
  readiness?(): Readiness;
  close?(): Promise<void>;
}

/** Builds an area runtime from the config. */
export type AreaFactory = (config: GatehouseConfig, services: GatewayServices) => AreaRuntime | Promise<AreaRuntime>;
