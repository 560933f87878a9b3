import type { ValidateFunction } from 'ajv';
import type { ResponseBodyConfig } from '../config/types.js';
import { compileBodySchema, describeSchemaError } from './body-schema.js';
import { parseJsonBody } from './json-text.js';
import { jsonMediaTypeProblem } from './request-body.js';

/**
 * `routes[].responseBody`, built once per route: the schema each status of an answer must match
 * (OpenAPI's `responses`: an exact code, then an `NXX` range, then `default`), and what happens
 * to an answer that does not. Against OWASP API3 (excessive data exposure): an answer that
 * carries a property its contract does not allow (or one marked `writeOnly`, a password) never
 * reaches the client.
 */
export interface ResponseCheck {
  /** Validators by exact status (`200`). */
  readonly exact: ReadonlyMap<number, ValidateFunction>;
  /** Validators by the status's first digit (`2XX` at index 2); null where none. */
  readonly ranges: readonly (ValidateFunction | null)[];
  /** `default`: every status with no schema of its own; null: none. */
  readonly fallback: ValidateFunction | null;
  /** A status with no schema at all: `pass` goes through unread, `refuse` is a 502. */
  readonly unlisted: 'pass' | 'refuse';
  /** Bytes of an answer held to be checked; a longer one cannot be checked. */
  readonly maxSize: number;
  readonly maxDepth: number;
  /** `refuse`: 502 and nothing of the answer sent; `log`: a warning, and the answer as it came. */
  readonly onInvalid: 'refuse' | 'log';
}

/**
 * Build a route's answer check from its config (the schemas compiled at load are reused).
 *
 * @example
 * ```ts
 * const check = createResponseCheck({ schemas: { '200': { schema: { type: 'object' } } }, unlisted: 'pass', maxSize: 1 << 20, maxDepth: 64, writeOnly: 'refuse', onInvalid: 'refuse' });
 * ```
 */
export function createResponseCheck(config: ResponseBodyConfig): ResponseCheck {
  const exact = new Map<number, ValidateFunction>();
  const ranges: (ValidateFunction | null)[] = [null, null, null, null, null, null];
  let fallback: ValidateFunction | null = null;
  for (const [status, entry] of Object.entries(config.schemas)) {
    const validate = compileBodySchema(entry.schema, { document: entry.document, readOnly: 'ignore', writeOnly: config.writeOnly });
    if (status === 'default') fallback = validate;
    else if (/^[1-5]XX$/.test(status)) ranges[Number(status[0])] = validate;
    else exact.set(Number(status), validate);
  }
  return { exact, ranges, fallback, unlisted: config.unlisted, maxSize: config.maxSize, maxDepth: config.maxDepth, onInvalid: config.onInvalid };
}

/**
 * The schema an answer with this status must match; null when it goes through unread (no schema
 * and `unlisted: pass`). `undefined` when the status has no schema and `unlisted: refuse`.
 */
export function responseValidator(check: ResponseCheck, status: number): ValidateFunction | null | undefined {
  const own = check.exact.get(status);
  if (own !== undefined) return own;
  const range = check.ranges[Math.floor(status / 100)];
  if (range != null) return range;
  if (check.fallback !== null) return check.fallback;
  return check.unlisted === 'pass' ? null : undefined;
}

/**
 * Request headers a `responseBody` route never forwards from a client: gatehouse asks for the
 * whole answer, unencoded (`Accept-Encoding: identity`), since a `Range` would get a part of a
 * body no schema reads and an encoding a body gatehouse cannot read.
 */
export const WHOLE_ANSWER_HEADERS = ['accept-encoding', 'range', 'if-range'] as const;

/** Statuses whose answers have no body to check (RFC 9110 §6.4.1). */
export function answerHasNoBody(method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || status < 200;
}

/**
 * Why an answer's head says it cannot be checked (not JSON, encoded, too long), or null. Read
 * when the head arrives, so an answer refused for its head is never read.
 */
export function responseHeadProblem(check: ResponseCheck, headers: Record<string, string | string[] | undefined>): string | null {
  const type = headers['content-type'];
  const media = jsonMediaTypeProblem(typeof type === 'string' ? type : undefined, 'answer');
  if (media !== null) return media;
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && String(encoding).trim().toLowerCase() !== 'identity') {
    return `the answer is encoded (content-encoding ${JSON.stringify(String(encoding).slice(0, 40))}) although gatehouse asked for identity`;
  }
  const length = headers['content-length'];
  if (typeof length === 'string' && Number(length) > check.maxSize) return `the answer's ${length} bytes are over responseBody.maxSize (${check.maxSize})`;
  return null;
}

/** Why a whole answer does not match its schema (where, and which rule; never a value), or null. */
export function responseBodyProblem(check: ResponseCheck, validate: ValidateFunction, bytes: Buffer): string | null {
  if (bytes.length === 0) return 'the answer has no body (a JSON body is what the route expects)';
  const parsed = parseJsonBody(bytes, check.maxDepth);
  if (!parsed.ok) return `the answer is not acceptable JSON: ${parsed.reason}`;
  if (validate(parsed.value)) return null;
  return `the answer does not match the route's schema, ${describeSchemaError(validate.errors?.[0])}`;
}
