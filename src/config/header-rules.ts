import type { HeaderRules, HeaderRulesConfig } from './types.js';

type Raw = Record<string, any>;
type Bad = (keyPath: (string | number)[], message: string) => void;

/** RFC 9110 §5.1 field name (token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value gatehouse will write: visible ASCII, spaces and tabs inside (no CR, LF, NUL or non-ASCII). */
const VALUE = /^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$/;

/** Framing and connection headers: neither side's to set or drop. */
const FRAMING = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'http2-settings'];

/** Request headers gatehouse decides itself (the forwarding headers, the token, the Host). */
const REQUEST_RESERVED: Record<string, string> = {
  host: 'undici writes each target\'s own Host',
  authorization: 'gatehouse forwards the validated token (routes[].forwardToken) or none',
  'x-request-id': 'gatehouse sends the request id',
  'x-forwarded-for': 'gatehouse sets the forwarding headers (upstreams[].forwardedHeaders)',
  'x-forwarded-proto': 'gatehouse sets the forwarding headers (upstreams[].forwardedHeaders)',
  'x-forwarded-host': 'gatehouse sets the forwarding headers (upstreams[].forwardedHeaders)',
  'x-forwarded-port': 'gatehouse drops a client\'s value and sets none',
  'x-real-ip': 'gatehouse drops a client\'s value and sets none',
  forwarded: 'gatehouse sets the forwarding headers (upstreams[].forwardedHeaders)',
  'client-cert': 'gatehouse sets it from the client\'s TLS certificate (upstreams[].forwardedHeaders: client-cert)',
  'client-cert-chain': 'gatehouse drops a client\'s value and sets none',
  expect: 'gatehouse answers Expect itself',
  'proxy-authorization': 'a hop-by-hop header, never forwarded',
};

/** Response headers gatehouse sets itself on a forwarded answer; `set` cannot take them over. */
const RESPONSE_SET_RESERVED: Record<string, string> = {
  'x-request-id': 'gatehouse sends the request id',
  'strict-transport-security': 'set by the listener (listen[].tls.hsts)',
  vary: 'gatehouse merges Vary with the upstream\'s',
  ratelimit: 'set by the rate limits',
  'ratelimit-policy': 'set by the rate limits',
  'retry-after': 'set by the rate limits',
  'set-cookie': 'cookies are the upstream\'s (or the token handler\'s) to set',
};

/**
 * `headers` (top level, for every route) and `routes[].headers`: checked and merged into what
 * one route does — `remove` lists joined, `set` values by name, the route's over the top
 * level's. Names lowercased. Null when nothing is left to do.
 *
 * @example
 * ```ts
 * mergeHeaderRules({ response: { remove: ['server'] } }, { response: { set: { 'Cache-Control': 'no-store' } } }, ['routes', 0, 'headers'], bad);
 * // { request: { set: {}, remove: [] }, response: { set: { 'cache-control': 'no-store' }, remove: ['server'] } }
 * ```
 */
export function mergeHeaderRules(global: HeaderRulesConfig | null, route: Raw | undefined, at: (string | number)[], bad: Bad): HeaderRulesConfig | null {
  const own = route === undefined ? null : checkHeaderRules(route, at, bad);
  if (global === null && own === null) return null;
  const merged: HeaderRulesConfig = {
    request: joinRules(global?.request, own?.request),
    response: joinRules(global?.response, own?.response),
  };
  const empty = (r: HeaderRules) => r.remove.length === 0 && Object.keys(r.set).length === 0;
  return empty(merged.request) && empty(merged.response) ? null : merged;
}

function joinRules(a: HeaderRules | undefined, b: HeaderRules | undefined): HeaderRules {
  return {
    set: { ...a?.set, ...b?.set },
    remove: [...new Set([...(a?.remove ?? []), ...(b?.remove ?? [])])],
  };
}

/** One `headers` section checked (its names lowercased); problems reported at their keys. */
export function checkHeaderRules(raw: Raw, at: (string | number)[], bad: Bad): HeaderRulesConfig {
  return {
    request: checkSide(raw.request as Raw | undefined, 'request', [...at, 'request'], bad),
    response: checkSide(raw.response as Raw | undefined, 'response', [...at, 'response'], bad),
  };
}

function checkSide(raw: Raw | undefined, side: 'request' | 'response', at: (string | number)[], bad: Bad): HeaderRules {
  const set: Record<string, string> = {};
  const remove: string[] = [];
  if (raw === undefined) return { set, remove };
  (raw.remove as string[] | undefined)?.forEach((name, i) => {
    const problem = nameProblem(name, side, 'remove');
    if (problem !== undefined) bad([...at, 'remove', i], problem);
    else remove.push(name.toLowerCase());
  });
  for (const [name, value] of Object.entries((raw.set as Record<string, unknown> | undefined) ?? {})) {
    const problem = nameProblem(name, side, 'set');
    if (problem !== undefined) {
      bad([...at, 'set', name], problem);
      continue;
    }
    if (typeof value !== 'string' || !VALUE.test(value)) {
      bad([...at, 'set', name], 'must be a header value: printable ASCII, no line breaks, no leading or trailing space');
      continue;
    }
    const lower = name.toLowerCase();
    if (set[lower] !== undefined) bad([...at, 'set', name], `is set twice (header names are case-insensitive)`);
    set[lower] = value;
  }
  return { set, remove };
}

function nameProblem(name: string, side: 'request' | 'response', action: 'set' | 'remove'): string | undefined {
  if (!TOKEN.test(name)) return `"${name}" is not a header name`;
  const lower = name.toLowerCase();
  if (lower.startsWith(':')) return `"${name}" is an HTTP/2 pseudo-header`;
  if (FRAMING.includes(lower)) return `cannot ${action} ${lower}: it frames the message or the connection, which is HTTP's to manage`;
  if (side === 'request') {
    const why = REQUEST_RESERVED[lower];
    if (why !== undefined) return `cannot ${action} ${lower} on the request: ${why}`;
    return undefined;
  }
  if (action === 'set') {
    const why = RESPONSE_SET_RESERVED[lower];
    if (why !== undefined) return `cannot set ${lower} on the answer: ${why}`;
    if (lower.startsWith('access-control-')) return `cannot set ${lower} on the answer: CORS is answered by the cors section (or the upstream)`;
  } else if (lower === 'x-request-id' || lower === 'strict-transport-security') {
    return `cannot remove ${lower} from the answer: gatehouse sets it`;
  }
  return undefined;
}
