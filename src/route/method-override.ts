import type { IncomingHttpHeaders } from 'node:http';

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
  for (let i = 0; i < OVERRIDE_HEADERS.length; i++) {
    const value = headers[OVERRIDE_HEADERS[i]!];
    if (typeof value === 'string' && differs(value, method)) return `${HEADER_NAMES[i]}: ${shown(value.trim())} on a ${method}`;
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
      if (differs(value, method)) return `the query parameter _method=${shown(value)} on a ${method}`;
    }
  }
  return null;
}

const HEADER_NAMES = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override'];

function differs(value: string, method: string): boolean {
  return value.trim().toUpperCase() !== method;
}

/** A value for a log line and an answer: printable ASCII, at most 32 characters. */
function shown(value: string): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '?');
  return clean.length > 32 ? `${clean.slice(0, 32)}…` : clean;
}
