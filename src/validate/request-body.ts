import type { IncomingMessage } from 'node:http';
import type { ValidateFunction } from 'ajv';
import type { RequestBodyConfig } from '../config/types.js';
import { RequestRejected, type GatehouseError } from '../errors.js';
import { compileBodySchema, describeSchemaError } from './body-schema.js';
import { methodOverrideRefused, overrideProblem } from '../route/method-override.js';
import { parseFormBody } from './form-text.js';
import { parseJsonBody } from './json-text.js';

/** The kinds of body a route's `requestBody` takes (`mediaTypes`). */
export type BodyMediaType = 'json' | 'form';

/** `routes[].requestBody`, built once per route: which requests it reads, and how it checks them. */
export interface BodyCheck {
  readonly methods: ReadonlySet<string>;
  readonly required: boolean;
  readonly maxDepth: number;
  /** JSON bodies are taken (`mediaTypes` lists `json`). */
  readonly json: boolean;
  /** Form bodies (`application/x-www-form-urlencoded`) are taken (`mediaTypes` lists `form`). */
  readonly form: boolean;
  /** The compiled JSON Schema for a JSON body; null: well-formed JSON is all that is asked. */
  readonly validate: ValidateFunction | null;
  /** The same schema compiled for a form's fields (text values read as their types); null: a well-formed form is all. */
  readonly validateForm: ValidateFunction | null;
}

/**
 * Build a route's body check from its config (the schema compiled at load is reused).
 *
 * @example
 * ```ts
 * const check = createBodyCheck({ schema: { type: 'object' }, readOnly: 'refuse', methods: ['POST'], required: true, maxDepth: 32, mediaTypes: ['json', 'form'] });
 * ```
 */
export function createBodyCheck(config: RequestBodyConfig): BodyCheck {
  const json = config.mediaTypes.includes('json');
  const form = config.mediaTypes.includes('form');
  const schema = config.schema;
  const context = { document: config.document, readOnly: config.readOnly };
  return {
    methods: new Set(config.methods),
    required: config.required,
    maxDepth: config.maxDepth,
    json,
    form,
    validate: schema === null || !json ? null : compileBodySchema(schema, context),
    validateForm: schema === null || !form ? null : compileBodySchema(schema, { ...context, text: true }),
  };
}

/** `application/x-www-form-urlencoded`, parameters allowed. */
const FORM_MEDIA_TYPE = /^application\/x-www-form-urlencoded\s*(?:;|$)/i;

/**
 * Which of the route's kinds of body a request's `Content-Type` announces — JSON or a form, in
 * UTF-8 — or why it announces none of them (for the 415).
 */
export function bodyMediaType(check: BodyCheck, contentType: string | undefined): BodyMediaType | { readonly problem: string } {
  if (check.form && contentType !== undefined && FORM_MEDIA_TYPE.test(contentType)) {
    const problem = charsetProblem(contentType, 'a form');
    return problem === null ? 'form' : { problem };
  }
  if (check.json) {
    const problem = jsonMediaTypeProblem(contentType);
    if (problem === null) return 'json';
    // JSON in another charset, or a route that takes JSON alone: the JSON check's own words.
    if (!check.form || (contentType !== undefined && JSON_MEDIA_TYPE.test(contentType))) return { problem };
  }
  if (contentType === undefined || contentType === '') return { problem: `the request has no Content-Type (${expected(check)} expected)` };
  return { problem: `Content-Type ${JSON.stringify(contentType.slice(0, 100))} is not ${check.json ? 'JSON or a form' : 'a form'} (${expected(check)} expected)` };
}

/** What a route's 415 says it takes: `JSON`, `a form`, or both. */
export function bodyKindsOf(check: BodyCheck): string {
  return check.json ? (check.form ? 'JSON or a form' : 'JSON') : 'a form';
}

function expected(check: BodyCheck): string {
  const form = 'application/x-www-form-urlencoded';
  return check.json ? (check.form ? `application/json, application/…+json or ${form}` : 'application/json or application/…+json') : form;
}

/** `application/json`, or any `application/…+json` (RFC 6839), parameters allowed. */
export const JSON_MEDIA_TYPE = /^application\/(?:json|[a-z0-9!#$&^_.-]+\+json)\s*(?:;|$)/i;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;

/**
 * Why a request's (or an answer's) `Content-Type` does not announce JSON in UTF-8 (RFC 8259 §8.1), or null.
 */
export function jsonMediaTypeProblem(contentType: string | undefined, of: 'request' | 'answer' = 'request'): string | null {
  if (contentType === undefined || contentType === '') return `the ${of} has no Content-Type (application/json expected)`;
  if (!JSON_MEDIA_TYPE.test(contentType)) return `Content-Type ${JSON.stringify(contentType.slice(0, 100))} is not JSON (application/json or application/…+json expected)`;
  return charsetProblem(contentType, 'JSON');
}

/** A `charset` parameter other than UTF-8, or null. */
function charsetProblem(contentType: string, what: 'JSON' | 'a form'): string | null {
  const charset = CHARSET.exec(contentType)?.[1];
  if (charset === undefined || charset.toLowerCase() === 'utf-8') return null;
  return what === 'JSON'
    ? `charset ${JSON.stringify(charset.slice(0, 40))} is not UTF-8, the one JSON is exchanged in`
    : `charset ${JSON.stringify(charset.slice(0, 40))} is not UTF-8, the one a form is read in here`;
}

/** The body in one buffer, or why not: over the limit, or the client went away (null). */
export type ReadBody = Buffer | 'too-large' | null;

/**
 * Read a request's whole body, up to `max` bytes. Resolves `'too-large'` as soon as it is over
 * (and stops reading), null when the request breaks off (the client left, a reset stream).
 * Its time is bounded by `limits.requestTimeout` (the listeners enforce it on HTTP/1.1 and HTTP/2).
 */
export function readBody(req: IncomingMessage, max: number): Promise<ReadBody> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let seen = 0;
    const finish = (result: ReadBody) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('aborted', onGone);
      req.off('close', onClose);
      if (result === 'too-large') req.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > max) finish('too-large');
      else chunks.push(chunk);
    };
    const onEnd = () => finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, seen));
    const onGone = () => finish(null);
    // A request that closes before its end: broken off.
    const onClose = () => {
      if (!req.complete) finish(null);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('aborted', onGone);
    req.on('close', onClose);
  });
}

/**
 * A body's `_method` naming another method than the request's, as `gateway.methodOverride`
 * refuses it, or null: a form's field (Rails, Laravel and Symfony execute a POST form as the
 * method it names), or a JSON object's top-level member (Laravel reads a JSON body as its input).
 */
function bodyMethodOverride(value: unknown, kind: BodyMediaType, method: string): string | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const field = (value as Record<string, unknown>)._method;
  if (field === undefined || !Object.hasOwn(value, '_method')) return null;
  const where = kind === 'form' ? 'the form field _method=' : 'the JSON member _method: ';
  for (const named of typeof field === 'string' ? [field] : Array.isArray(field) ? field : []) {
    if (typeof named !== 'string') continue;
    const problem = overrideProblem(named, method, where);
    if (problem !== null) return problem;
  }
  return null;
}

/** 400 for a body the route's `requestBody` does not accept; `reason` says why, to the client too. */
export function bodyInvalid(reason: string, extra?: { headers?: Record<string, string> }): GatehouseError {
  return new RequestRejected('GH_ERR_REQUEST_BODY_INVALID', 400, `the request body is not accepted: ${reason}`, { detail: reason, ...extra });
}

/**
 * Check a whole body against the route's rules: JSON (or a form) that every parser reads alike
 * (see json-text.ts, form-text.ts), then — given the request's `method` (`gateway.methodOverride:
 * refuse`) — a `_method` naming another one, then the schema. Null when it is accepted.
 */
export function checkBody(check: BodyCheck, bytes: Buffer, kind: BodyMediaType = 'json', method: string | null = null): GatehouseError | null {
  if (bytes.length === 0) return check.required ? bodyInvalid(`a ${kind === 'json' ? 'JSON' : 'form'} body is required and this one is empty`) : null;
  const parsed = kind === 'json' ? parseJsonBody(bytes, check.maxDepth) : parseFormBody(bytes);
  if (!parsed.ok) return bodyInvalid(parsed.reason);
  if (method !== null) {
    const override = bodyMethodOverride(parsed.value, kind, method);
    if (override !== null) return methodOverrideRefused(override);
  }
  const validate = kind === 'json' ? check.validate : check.validateForm;
  if (validate === null || validate(parsed.value)) return null;
  return bodyInvalid(`it does not match the route's schema, ${describeSchemaError(validate.errors?.[0])}`);
}
