import type { IncomingHttpHeaders } from 'node:http';
import { RequestRejected } from '../errors.js';

/**
 * The headers frameworks read as "take this request as another method": Express's
 * method-override, Rails (Rack::MethodOverride), Laravel, Symfony, ASP.NET Core, Google's APIs.
 */
const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/**
 * Why a request asks to be taken as another method than its request line names, or null.
 * gatehouse routes, authorizes, limits and logs the method it sees; an upstream that honours an
 * override would act on another one — `GET /orders/7` granted with `orders:read`, executed as
 * `DELETE`. Looked for: the three override headers, and a `_method` query parameter (Laravel,
 * Symfony, Express's `methodOverride('_method')`), decoded as the framework decodes it. An
 * override naming the request's own method changes nothing and passes. Allocation-free for a
 * request without them (three lookups, and the query only when it could hold `_method`).
 *
 * @example
 * ```ts
 * methodOverrideProblem({ 'x-http-method-override': 'DELETE' }, 'POST', ''); // 'X-HTTP-Method-Override: DELETE on a POST'
 * ```
 */
export function methodOverrideProblem(headers: IncomingHttpHeaders, method: string, query: string): string | null {
  // Three named loads (no per-request key lookups through a list): every request runs them.
  const named = headers['x-http-method-override'] ?? headers['x-http-method'] ?? headers['x-method-override'];
  if (named !== undefined) {
    for (let i = 0; i < OVERRIDE_HEADERS.length; i++) {
      const value = headers[OVERRIDE_HEADERS[i]!];
      if (typeof value !== 'string') continue;
      const problem = overrideProblem(value, method, `${HEADER_NAMES[i]}: `);
      if (problem !== null) return problem;
    }
  }
  // `_method`, or an encoding of it (`%5Fmethod`): a query without "method" and without "%" has neither.
  if (query.length > 8 && (query.includes('method') || query.includes('%'))) {
    let params: URLSearchParams;
    try {
      params = new URLSearchParams(query.slice(1));
    } catch {
      return null;
    }
    for (const value of params.getAll('_method')) {
      const problem = overrideProblem(value, method, 'the query parameter _method=');
      if (problem !== null) return problem;
    }
  }
  return null;
}

const HEADER_NAMES = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override'];

/**
 * One override's value (`where` says what carried it): null when it names the request's own
 * method, else what to say — the value as printable ASCII, at most 32 characters.
 */
export function overrideProblem(value: string, method: string, where: string): string | null {
  const named = value.trim();
  if (named.toUpperCase() === method) return null;
  const clean = named.replace(/[^\x21-\x7e]/g, '?');
  return `${where}${clean.length > 32 ? `${clean.slice(0, 32)}…` : clean} on a ${method}`;
}

/** The 400 for a request that asks to be taken as another method (`problem`: what carried it, from {@link overrideProblem}). */
export function methodOverrideRefused(problem: string): RequestRejected {
  return new RequestRejected('GH_ERR_REQUEST_METHOD_OVERRIDE', 400, `the request asks to be taken as another method (${problem}): send that method itself`, { detail: problem });
}
