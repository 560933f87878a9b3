/**
 * The route table: a segment trie built once per config. Paths match on segment boundaries
 * (`/orders` matches `/orders` and `/orders/42`, never `/ordersX`); a literal segment beats a
 * `{param}` segment, and the longest matching path wins. The most specific path alone decides
 * the methods: a method it does not allow is a 405, never a fall-through to a shorter route.
 * A route without a method list takes every method but TRACE (see {@link takesUnlisted}).
 */

export interface RouteEntry<R> {
  readonly route: R;
  /** null = every method but TRACE ({@link takesUnlisted}). */
  readonly methods: ReadonlySet<string> | null;
}

interface TrieNode<R> {
  literal: Map<string, TrieNode<R>>;
  param: TrieNode<R> | null;
  paramName: string | null;
  entries: RouteEntry<R>[] | null;
  /** Precomputed `Allow` header for this node. */
  allow: string;
}

export type MatchResult<R> =
  | { readonly kind: 'route'; readonly route: R; readonly params: Record<string, string>; readonly prefixLength: number }
  | { readonly kind: 'method-not-allowed'; readonly allow: string }
  | { readonly kind: 'not-found' };

const NOT_FOUND = Object.freeze({ kind: 'not-found' as const });
const EMPTY_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

function newNode<R>(): TrieNode<R> {
  return { literal: new Map(), param: null, paramName: null, entries: null, allow: '' };
}

/**
 * Build a matcher from `[pathPattern, methods, route]` triples.
 *
 * @example
 * ```ts
 * const table = createRouteTable([{ path: '/orders', methods: ['GET'], route: 'list' }]);
 * table.match('GET', '/orders/42'); // { kind: 'route', route: 'list', params: {}, prefixLength: 7 }
 * ```
 */
export function createRouteTable<R>(routes: readonly { path: string; methods: readonly string[] | null; route: R }[]): RouteTable<R> {
  const root = newNode<R>();
  for (const { path, methods, route } of routes) {
    let node = root;
    for (const segment of splitPattern(path)) {
      const param = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(segment);
      if (param) {
        if (!node.param) {
          node.param = newNode<R>();
          node.paramName = param[1]!;
        }
        node = node.param;
      } else {
        let next = node.literal.get(segment);
        if (!next) {
          next = newNode<R>();
          node.literal.set(segment, next);
        }
        node = next;
      }
    }
    const set = methods ? new Set(methods) : null;
    if (set?.has('GET')) set.add('HEAD');
    (node.entries ??= []).push({ route, methods: set });
  }
  finalize(root);
  return new RouteTable(root);
}

/**
 * Whether a route without a `methods` list takes `method`: every method but TRACE. A TRACE
 * answer echoes the request it received, and what reaches an upstream through gatehouse carries
 * credentials (the forwarded token, the client's cookies): cross-site tracing. A route that
 * means to serve TRACE lists it. Hot path: one string comparison (over HTTP/1.1 node's method
 * strings are its interned constants, so a pointer comparison).
 */
function takesUnlisted(method: string): boolean {
  return method !== 'TRACE';
}

/** What `Allow` names for a route without a method list (the methods of RFC 9110 §9 and PATCH, but TRACE and CONNECT). */
const UNLISTED_ALLOW = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT'] as const;

function finalize<R>(node: TrieNode<R>): void {
  if (node.entries) {
    const methods = new Set<string>(node.entries.some((e) => e.methods === null) ? UNLISTED_ALLOW : []);
    for (const e of node.entries) e.methods?.forEach((m) => methods.add(m));
    node.allow = [...methods].sort().join(', ');
  }
  for (const child of node.literal.values()) finalize(child);
  if (node.param) finalize(node.param);
}

function splitPattern(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/**
 * The compiled matcher. Hot path: `match` walks the path in place (no split, no closure) only
 * as deep as the trie goes, and allocates only the segment strings it looks up and the params
 * object of a param route. Matching is synchronous, so the walk's scratch state lives on the
 * table and is reused.
 */
export class RouteTable<R> {
  // Scratch state of one walk (reset by each match).
  private path = '';
  private bestNode: TrieNode<R> | null = null;
  private bestDepth = -1;
  private bestLiterals = -1;
  private bestEnd = 0;
  private bestParamCount = 0;
  /** [start, end) of each captured param segment on the current branch, and of the best one. */
  private readonly params: number[] = [];
  private readonly bestParams: number[] = [];
  private readonly paramNames: string[] = [];
  private readonly bestParamNames: string[] = [];

  constructor(private readonly root: TrieNode<R>) {}

  match(method: string, path: string): MatchResult<R> {
    this.path = path;
    this.bestNode = null;
    this.bestDepth = -1;
    this.bestLiterals = -1;
    this.walk(this.root, 1, 0, 0, 0, 0);
    const node = this.bestNode as TrieNode<R> | null;
    this.path = '';
    if (node === null) return NOT_FOUND;
    const entries = node.entries!;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.methods === null ? takesUnlisted(method) : entry.methods.has(method)) {
        let params = EMPTY_PARAMS;
        if (this.bestParamCount > 0) {
          params = {};
          for (let j = 0; j < this.bestParamCount; j++) {
            params[this.bestParamNames[j]!] = decodeParam(path.slice(this.bestParams[2 * j]!, this.bestParams[2 * j + 1]!));
          }
        }
        return { kind: 'route', route: entry.route, params, prefixLength: this.bestEnd };
      }
    }
    return { kind: 'method-not-allowed', allow: node.allow };
  }

  /**
   * Depth-first: a literal child before the param child, so a literal segment wins a tie; the
   * deepest node with routes wins overall. `pos` is where the next segment starts, `end` where
   * the path matched so far ends.
   */
  private walk(node: TrieNode<R>, pos: number, end: number, depth: number, literals: number, paramCount: number): void {
    if (node.entries !== null && (depth > this.bestDepth || (depth === this.bestDepth && literals > this.bestLiterals))) {
      this.bestNode = node;
      this.bestDepth = depth;
      this.bestLiterals = literals;
      this.bestEnd = end;
      this.bestParamCount = paramCount;
      for (let i = 0; i < paramCount; i++) {
        this.bestParams[2 * i] = this.params[2 * i]!;
        this.bestParams[2 * i + 1] = this.params[2 * i + 1]!;
        this.bestParamNames[i] = this.paramNames[i]!;
      }
    }
    const path = this.path;
    // Skip empty segments (a trailing slash); normalized paths have no others.
    while (pos < path.length && path.charCodeAt(pos) === 47 /* / */) pos++;
    if (pos >= path.length) return;
    if (node.literal.size === 0 && node.param === null) return;
    let stop = path.indexOf('/', pos);
    if (stop === -1) stop = path.length;
    if (node.literal.size > 0) {
      const next = node.literal.get(path.slice(pos, stop));
      if (next !== undefined) this.walk(next, stop + 1, stop, depth + 1, literals + 1, paramCount);
    }
    if (node.param !== null) {
      this.params[2 * paramCount] = pos;
      this.params[2 * paramCount + 1] = stop;
      this.paramNames[paramCount] = node.paramName!;
      this.walk(node.param, stop + 1, stop, depth + 1, literals, paramCount + 1);
    }
  }
}

function decodeParam(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
