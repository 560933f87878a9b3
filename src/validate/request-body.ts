import type { IncomingMessage } from 'node:http';
import type { ValidateFunction } from 'ajv';
import type { RequestBodyConfig } from '../config/types.js';
import { RequestRejected, type GatehouseError } from '../errors.js';
import { compileBodySchema, describeSchemaError } from './body-schema.js';
import { parseJsonBody } from './json-text.js';

/** `routes[].requestBody`, built once per route: which requests it reads, and how it checks them. */
export interface BodyCheck {
  readonly methods: ReadonlySet<string>;
  readonly required: boolean;
  readonly maxDepth: number;
  /** The compiled JSON Schema; null: well-formed JSON is all that is asked. */
  readonly validate: ValidateFunction | null;
}

/**
 * Build a route's body check from its config (the schema compiled at load is reused).
 *
 * @example
 * ```ts
 * const check = createBodyCheck({ schema: { type: 'object' }, methods: ['POST'], required: true, maxDepth: 32 });
 * ```
 */
export function createBodyCheck(config: RequestBodyConfig): BodyCheck {
  return {
    methods: new Set(config.methods),
    required: config.required,
    maxDepth: config.maxDepth,
    validate: config.schema === null ? null : compileBodySchema(config.schema, { document: config.document, readOnly: config.readOnly }),
  };
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
  const charset = CHARSET.exec(contentType)?.[1];
  if (charset !== undefined && charset.toLowerCase() !== 'utf-8') return `charset ${JSON.stringify(charset.slice(0, 40))} is not UTF-8, the one JSON is exchanged in`;
  return null;
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

/** 400 for a body the route's `requestBody` does not accept; `reason` says why, to the client too. */
export function bodyInvalid(reason: string, extra?: { headers?: Record<string, string> }): GatehouseError {
  return new RequestRejected('GH_ERR_REQUEST_BODY_INVALID', 400, `the request body is not accepted: ${reason}`, { detail: reason, ...extra });
}

/**
 * Check a whole body against the route's rules: JSON that every parser reads alike (see
 * json-text.ts), then the schema. Null when it is accepted.
 */
export function checkBody(check: BodyCheck, bytes: Buffer): GatehouseError | null {
  if (bytes.length === 0) return check.required ? bodyInvalid('a JSON body is required and this one is empty') : null;
  const parsed = parseJsonBody(bytes, check.maxDepth);
  if (!parsed.ok) return bodyInvalid(parsed.reason);
  const validate = check.validate;
  if (validate === null || validate(parsed.value)) return null;
  return bodyInvalid(`it does not match the route's schema, ${describeSchemaError(validate.errors?.[0])}`);
}
