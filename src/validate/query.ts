import type { ValidateFunction } from 'ajv';
import { RequestRejected, type GatehouseError } from '../errors.js';
import { compileQuerySchema, describeSchemaError } from './body-schema.js';

/** A route's `query`, `params` or `requestHeaders`: a schema for text values, built once per route. */
export interface QueryCheck {
  readonly validate: ValidateFunction;
}

/**
 * Build a route's query check from its schema (compiled at load; reused here).
 *
 * @example
 * ```ts
 * const check = createQueryCheck({ type: 'object', properties: { page: { type: 'integer', minimum: 1 } } });
 * ```
 */
export function createQueryCheck(schema: object): QueryCheck {
  return { validate: compileQuerySchema(schema) };
}

/**
 * A query string (`?a=1&b=x&b=y`, or '') as the object its schema is checked against: each name
 * to its decoded value, a name given more than once to an array of them. No prototype: a
 * parameter named `__proto__` or `constructor` is a parameter like any other.
 */
export function queryObject(query: string): Record<string, string | string[]> {
  const out = Object.create(null) as Record<string, string | string[]>;
  if (query.length <= 1) return out;
  for (const [name, value] of new URLSearchParams(query.charCodeAt(0) === 63 /* ? */ ? query.slice(1) : query)) {
    const held = out[name];
    if (held === undefined) out[name] = value;
    else if (typeof held === 'string') out[name] = [held, value];
    else held.push(value);
  }
  return out;
}

/** 400 `GH_ERR_REQUEST_QUERY_INVALID` for a query the route's schema refuses (saying where), else null. */
export function checkQuery(check: QueryCheck, query: string): GatehouseError | null {
  return refusal(check.validate, queryObject(query), 'GH_ERR_REQUEST_QUERY_INVALID', 'the query is');
}

/**
 * 400 `GH_ERR_REQUEST_PARAMS_INVALID` for path parameters (`/orders/{id}`: `{ id: '7' }`, decoded)
 * the route's `params` schema refuses, else null. Checked on a copy: coercion (`type: integer`
 * takes `'7'`) never changes what claim rules and the log see, nor the path forwarded.
 */
export function checkParams(check: QueryCheck, params: Record<string, string>): GatehouseError | null {
  return refusal(check.validate, { ...params }, 'GH_ERR_REQUEST_PARAMS_INVALID', 'the path is');
}

/**
 * A request's headers (`rawHeaders`: `[name, value, …]` as received) as the object its schema is
 * checked against: each lowercase name to its value, a header sent more than once to an array of
 * its values in order (so a schema's string refuses a second `X-Tenant-Id` that one server would
 * take and another drop). `Cookie` lines are one value joined with "; " (HTTP/2 sends a cookie per
 * line). HTTP/2 pseudo-headers (`:path`) are not headers. No prototype.
 */
export function headerObject(rawHeaders: readonly string[]): Record<string, string | string[]> {
  const out = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name.charCodeAt(0) === 58 /* : */) continue;
    const value = rawHeaders[i + 1]!;
    const held = out[name];
    if (held === undefined) out[name] = value;
    else if (name === 'cookie') out[name] = `${held as string}; ${value}`;
    else if (typeof held === 'string') out[name] = [held, value];
    else held.push(value);
  }
  return out;
}

/** 400 `GH_ERR_REQUEST_HEADERS_INVALID` for headers the route's `requestHeaders` schema refuses (saying which), else null. */
export function checkHeaders(check: QueryCheck, rawHeaders: readonly string[]): GatehouseError | null {
  return refusal(check.validate, headerObject(rawHeaders), 'GH_ERR_REQUEST_HEADERS_INVALID', "the request's headers are");
}

/** Null when `value` meets the schema; else the 400 saying where (the first error). */
function refusal(validate: ValidateFunction, value: object, code: 'GH_ERR_REQUEST_QUERY_INVALID' | 'GH_ERR_REQUEST_PARAMS_INVALID' | 'GH_ERR_REQUEST_HEADERS_INVALID', what: string): GatehouseError | null {
  if (validate(value)) return null;
  const reason = describeSchemaError(validate.errors?.[0]);
  return new RequestRejected(code, 400, `${what} not accepted: ${reason}`, { detail: reason });
}
