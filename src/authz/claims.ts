import { Environment } from '@marcbachmann/cel-js';
import { ClaimDenied } from '../errors.js';
import type { Principal, RequestContext } from '../pipeline/context.js';

/**
 * Claim rules: CEL expressions (the Common Expression Language of Envoy and Kubernetes) over
 * `claims` (the validated token's claims) and `request` (`method`, `path`, `params` — the
 * route's `{param}` values —, `headers` with lowercase names, and `query`). A rule must evaluate
 * to exactly `true`; `false`, any other value, or an evaluation error (e.g. a missing claim)
 * denies with 403 (OWASP API1: object-level authorization). Rules are parsed and type-checked
 * once, at config load. The denial's log `detail` names the rule (`claims[1] "<source>"`) and
 * the kind of result or error, never a value: a result can be a token or a cookie.
 *
 * @example
 * ```yaml
 * claims:
 *   - claims.sub == request.params.userId
 *   - { rule: 'claims.tenant == request.headers["x-tenant"]', message: 'wrong tenant' }
 * ```
 */

/** The one CEL environment: two map variables, bounded expression size. */
const env = new Environment({
  unlistedVariablesAreDyn: false,
  limits: { maxAstNodes: 512, maxDepth: 32, maxListElements: 256, maxMapEntries: 256, maxCallArguments: 16 },
})
  .registerVariable('claims', 'map')
  .registerVariable('request', 'map');

/** A compiled rule. */
export interface ClaimRule {
  readonly source: string;
  /** Public text of the 403 (the rule's `message`, or a generic one). */
  readonly message: string | undefined;
  /**
   * `true`, or why not — the kind of result (`returned false`, `returned a string, not true`) or
   * of error (`failed: EvaluationError no_such_key`), never a value: a rule's result or error text
   * can carry request data (a token, a cookie), and this goes to the log.
   */
  evaluate(input: ClaimRuleInput): true | string;
}

/** What a rule sees. */
export interface ClaimRuleInput {
  claims: Readonly<Record<string, unknown>>;
  request: {
    method: string;
    path: string;
    params: Record<string, string>;
    headers: Readonly<Record<string, string | string[] | undefined>>;
    query: string;
  };
}

/**
 * Compile one rule, or explain why it is not valid CEL / not a boolean expression.
 *
 * @example
 * ```ts
 * const rule = compileClaimRule('claims.sub == request.params.userId');
 * if (typeof rule === 'string') issues.push(rule);
 * ```
 */
export function compileClaimRule(source: string, message?: string): ClaimRule | string {
  let program: ReturnType<typeof env.parse>;
  try {
    program = env.parse(source);
  } catch (err) {
    return `is not a valid CEL expression: ${firstLine(err)}`;
  }
  let checked: { valid: boolean; type?: string; error?: unknown };
  try {
    checked = env.check(source) as typeof checked;
  } catch (err) {
    return `is not a valid CEL expression: ${firstLine(err)}`;
  }
  if (!checked.valid) return `is not a valid CEL expression: ${firstLine(checked.error)}`;
  if (checked.type !== 'bool' && checked.type !== 'dyn') return `must be a boolean expression (it is of type ${checked.type})`;
  return {
    source,
    message,
    evaluate(input) {
      let value: unknown;
      try {
        value = program(input as never);
      } catch (err) {
        return `failed: ${errorKind(err)}`;
      }
      if (value === true) return true;
      return value === false ? 'returned false' : `returned ${kindOf(value)}, not true`;
    },
  };
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.trim();
}

/** cel-js error codes (`no_such_key`, `invalid_duration`) are fixed identifiers; messages are not. */
const ERROR_CODE = /^[a-z][a-z0-9_]{0,63}$/;
const ERROR_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** The class and code of an evaluation error: its message can quote request data ("No such key: <header value>"). */
function errorKind(err: unknown): string {
  if (!(err instanceof Error)) return 'a thrown non-error';
  const name = ERROR_NAME.test(err.name) ? err.name : 'Error';
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && ERROR_CODE.test(code) ? `${name} ${code}` : name;
}

/** The CEL type of a result, in words ("a string"), for the log: never the value itself. */
function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a double';
    case 'bigint':
      return 'an int';
    case 'boolean':
      return 'a bool';
    default:
      if (Array.isArray(value)) return 'a list';
      if (value instanceof Uint8Array) return 'bytes';
      if (value instanceof Date) return 'a timestamp';
      if (value instanceof Map || Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null) return 'a map';
      return 'a value of another type';
  }
}

/**
 * Build the claim-rule check of a route from compiled rules; null when there are none.
 * Runs the rules in order; the first that is not true denies.
 *
 * @example
 * ```ts
 * const check = compileClaimCheck([rule]);
 * const denial = check?.(ctx, principal) ?? null;
 * ```
 */
export function compileClaimCheck(rules: readonly ClaimRule[]): ((ctx: RequestContext, principal: Principal) => ClaimDenied | null) | null {
  if (rules.length === 0) return null;
  // The log names the rule by its key and its source — config, not request data.
  const labels = rules.map((rule, i) => `claims[${i}] ${JSON.stringify(rule.source)}`);
  return function checkClaims(ctx: RequestContext, principal: Principal): ClaimDenied | null {
    const input: ClaimRuleInput = {
      claims: principal.claims,
      request: { method: ctx.method, path: ctx.path, params: ctx.params, headers: ctx.headers, query: ctx.query },
    };
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      const verdict = rule.evaluate(input);
      if (verdict !== true) return new ClaimDenied(rule.message ?? 'the request is not allowed for this token', { detail: `${labels[i]} ${verdict}` });
    }
    return null;
  };
}
