/**
 * The route table: a segment trie built once per config. Paths match on segment boundaries
 * (`/orders` matches `/orders` and `/orders/42`, never `/ordersX`); a literal segment beats a
 * `{param}` segment, and the longest matching path wins. The most specific path alone decides
 * the methods: a method it does not allow is a 405, never a fall-through to a shorter route.
 * A route without a method list takes every method but TRACE (see {@link takesUnlisted}).
 *
 * A segment matches without its path parameters (`export;v=1` is `export`), as Tomcat, Jetty,
 * Spring and JAX-RS map it (normalizeTarget refuses `;` unless `gateway.paths.allowSemicolons`),
 * and a segment with percent-encodings matches a literal decoded (`orders%3Aexport` is the
 * route `/orders:export` an upstream decodes it into). Params are decoded too.
 */

export interface RouteEntry<R> {
  readonly route: R;
  /** null = every method but TRACE ({@link takesUnlisted}). */
  readonly methods: ReadonlySet<string> | null;
  /** This route's names of its `{param}` segments, in path order (routes sharing a node may name them differently). */
  readonly paramNames: readonly string[];
}

interface TrieNode<R> {
  literal: Map<string, TrieNode<R>>;
  param: TrieNode<R> | null;
  /** The routes whose path ends here: for a request path that ends here too. */
  entries: RouteEntry<R>[] | null;
  /** Those of them that also take longer paths (all but `exact` routes): for a path that goes on. */
  prefixEntries: RouteEntry<R>[] | null;
  /** Precomputed `Allow` headers for this node, for a path that ends here and one that goes on. */
  allow: string;
  prefixAllow: string;
}

export type MatchResult<R> =
  | { readonly kind: 'route'; readonly route: R; readonly params: Record<string, string>; readonly prefixLength: number }
  | { readonly kind: 'method-not-allowed'; readonly allow: string }
  | { readonly kind: 'not-found' };

const NOT_FOUND = Object.freeze({ kind: 'not-found' as const });
const EMPTY_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

const PARAM_SEGMENT = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
/** A literal segment no percent-encoding left by normalizeTarget can spell (unreserved characters only). */
const UNRESERVED_SEGMENT = /^[A-Za-z0-9._~-]*$/;

function newNode<R>(): TrieNode<R> {
  return { literal: new Map(), param: null, entries: null, prefixEntries: null, allow: '', prefixAllow: '' };
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
export function createRouteTable<R>(routes: readonly { path: string; methods: readonly string[] | null; route: R; exact?: boolean }[]): RouteTable<R> {
  const root = newNode<R>();
  for (const { path, methods, route, exact } of routes) {
    let node = root;
    const paramNames: string[] = [];
    for (const segment of splitPattern(path)) {
      const param = PARAM_SEGMENT.exec(segment);
      if (param) {
        paramNames.push(param[1]!);
        node.param ??= newNode<R>();
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
    const entry = { route, methods: set, paramNames };
    (node.entries ??= []).push(entry);
    if (exact !== true) (node.prefixEntries ??= []).push(entry);
  }
  finalize(root);
  return new RouteTable(root, routes.some((r) => splitPattern(r.path).some((s) => !UNRESERVED_SEGMENT.test(s) && !PARAM_SEGMENT.test(s))));
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
  if (node.entries) node.allow = allowOf(node.entries);
  if (node.prefixEntries) node.prefixAllow = allowOf(node.prefixEntries);
  for (const child of node.literal.values()) finalize(child);
  if (node.param) finalize(node.param);
}

function allowOf<R>(entries: readonly RouteEntry<R>[]): string {
  const methods = new Set<string>(entries.some((e) => e.methods === null) ? UNLISTED_ALLOW : []);
  for (const e of entries) e.methods?.forEach((m) => methods.add(m));
  return [...methods].sort().join(', ');
}

function splitPattern(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/**
 * The compiled matcher. Hot path: `match` walks the path in place (no split, no closure) only
 * as deep as the trie goes, and allocates only the segment strings it looks up and the params
 * object of a param route. Matching is synchronous, so the walk's scratch state lives on the
 * table and is reused. A path without `;` (and without `%`, when some literal holds a
 * character that an encoding could spell) looks its segments up as they are, after one
 * `indexOf`; any other takes the slower {@link segmentKey}.
 */
export class RouteTable<R> {
  // Scratch state of one walk (reset by each match).
  private path = '';
  private bestNode: TrieNode<R> | null = null;
  /** Whether the best node is where the path ends (its exact routes count) or a prefix of it. */
  private bestAtEnd = false;
  private bestDepth = -1;
  private bestLiterals = -1;
  private bestEnd = 0;
  private bestParamCount = 0;
  /** False when the path has a `;`, or a `%` that may spell a literal: segments then go through {@link segmentKey}. */
  private plain = true;
  /** [start, end) of each captured param segment on the current branch, and of the best one. */
  private readonly params: number[] = [];
  private readonly bestParams: number[] = [];

  /**
   * @param encodable Some literal segment holds a character besides the unreserved ones, which
   *   normalizeTarget decodes: only then can a request segment with `%` spell a literal.
   */
  constructor(
    private readonly root: TrieNode<R>,
    private readonly encodable: boolean,
  ) {}

  match(method: string, path: string): MatchResult<R> {
    this.path = path;
    this.bestNode = null;
    this.bestDepth = -1;
    this.bestLiterals = -1;
    this.plain = path.indexOf(';') === -1 && (!this.encodable || path.indexOf('%') === -1);
    this.walk(this.root, 1, 0, 0, 0, 0);
    const node = this.bestNode as TrieNode<R> | null;
    this.path = '';
    if (node === null) return NOT_FOUND;
    const atEnd = this.bestAtEnd;
    const entries = (atEnd ? node.entries : node.prefixEntries)!;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.methods === null ? takesUnlisted(method) : entry.methods.has(method)) {
        let params = EMPTY_PARAMS;
        if (this.bestParamCount > 0) {
          // Every route ending at this node has bestParamCount params; the winner names them.
          params = {};
          const names = entry.paramNames;
          for (let j = 0; j < this.bestParamCount; j++) {
            params[names[j]!] = decodeParam(path.slice(this.bestParams[2 * j]!, this.bestParams[2 * j + 1]!));
          }
        }
        return { kind: 'route', route: entry.route, params, prefixLength: this.bestEnd };
      }
    }
    return { kind: 'method-not-allowed', allow: atEnd ? node.allow : node.prefixAllow };
  }

  /**
   * Depth-first: a literal child before the param child, so a literal segment wins a tie; the
   * deepest node with routes wins overall. `pos` is where the next segment starts, `end` where
   * the path matched so far ends.
   */
  private walk(node: TrieNode<R>, pos: number, end: number, depth: number, literals: number, paramCount: number): void {
    const path = this.path;
    // Skip empty segments (a trailing slash); normalized paths have no others.
    while (pos < path.length && path.charCodeAt(pos) === 47 /* / */) pos++;
    const atEnd = pos >= path.length;
    // An `exact` route takes only a path that ends at its node; the others take longer ones too.
    if ((atEnd ? node.entries : node.prefixEntries) !== null && (depth > this.bestDepth || (depth === this.bestDepth && literals > this.bestLiterals))) {
      this.bestNode = node;
      this.bestAtEnd = atEnd;
      this.bestDepth = depth;
      this.bestLiterals = literals;
      this.bestEnd = end;
      this.bestParamCount = paramCount;
      for (let i = 0; i < paramCount; i++) {
        this.bestParams[2 * i] = this.params[2 * i]!;
        this.bestParams[2 * i + 1] = this.params[2 * i + 1]!;
      }
    }
    if (atEnd) return;
    if (node.literal.size === 0 && node.param === null) return;
    let stop = path.indexOf('/', pos);
    if (stop === -1) stop = path.length;
    // Where the segment's name ends: before its path parameters, if any.
    let nameEnd = stop;
    if (!this.plain) {
      const semi = path.indexOf(';', pos);
      if (semi !== -1 && semi < stop) nameEnd = semi;
    }
    if (node.literal.size > 0) {
      const next = node.literal.get(this.plain ? path.slice(pos, stop) : segmentKey(path.slice(pos, nameEnd)));
      if (next !== undefined) this.walk(next, stop + 1, stop, depth + 1, literals + 1, paramCount);
    }
    if (node.param !== null) {
      this.params[2 * paramCount] = pos;
      this.params[2 * paramCount + 1] = nameEnd;
      this.walk(node.param, stop + 1, stop, depth + 1, literals, paramCount + 1);
    }
  }
}

/**
 * The literal a segment name (without parameters) matches: decoded, as the upstream decodes it.
 * Route paths hold no `%`; a name that is not UTF-8 once decoded stays as it is and so matches
 * no literal.
 */
function segmentKey(name: string): string {
  return name.indexOf('%') === -1 ? name : decodeParam(name);
}

function decodeParam(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
