/**
 * The route table: a segment trie built once per config. Paths match on segment boundaries
 * (`/orders` matches `/orders` and `/orders/42`, never `/ordersX`); a literal segment beats a
 * `{param}` segment, and the longest matching path wins. The most specific path alone decides
 * the methods: a method it does not allow is a 405, never a fall-through to a shorter route.
 */

export interface RouteEntry<R> {
  readonly route: R;
  /** null = all methods. */
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

function finalize<R>(node: TrieNode<R>): void {
  if (node.entries) {
    const all = node.entries.some((e) => e.methods === null);
    const methods = new Set<string>();
    for (const e of node.entries) e.methods?.forEach((m) => methods.add(m));
    node.allow = all ? '' : [...methods].sort().join(', ');
  }
  for (const child of node.literal.values()) finalize(child);
  if (node.param) finalize(node.param);
}

function splitPattern(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

interface Best<R> {
  node: TrieNode<R>;
  depth: number;
  literals: number;
  params: [string, string][];
  prefixLength: number;
}

/** The compiled matcher. Hot path: `match` allocates only the params object of a param route. */
export class RouteTable<R> {
  constructor(private readonly root: TrieNode<R>) {}

  match(method: string, path: string): MatchResult<R> {
    const best = this.find(path);
    if (!best) return NOT_FOUND;
    const entries = best.node.entries!;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.methods === null || entry.methods.has(method)) {
        let params = EMPTY_PARAMS;
        if (best.params.length > 0) {
          params = {};
          for (const [k, v] of best.params) params[k] = v;
        }
        return { kind: 'route', route: entry.route, params, prefixLength: best.prefixLength };
      }
    }
    return { kind: 'method-not-allowed', allow: best.node.allow };
  }

  private find(path: string): Best<R> | null {
    // Walk segments; prefer literals, fall back to params (depth-first with backtracking).
    const segments: string[] = [];
    const ends: number[] = [];
    let start = 1;
    for (let i = 1; i <= path.length; i++) {
      if (i === path.length || path.charCodeAt(i) === 47 /* / */) {
        if (i > start) {
          segments.push(path.slice(start, i));
          ends.push(i);
        }
        start = i + 1;
      }
    }
    let best: Best<R> | null = null;
    const params: [string, string][] = [];
    const visit = (node: TrieNode<R>, depth: number, literals: number): void => {
      if (node.entries) {
        if (!best || depth > best.depth || (depth === best.depth && literals > best.literals)) {
          best = { node, depth, literals, params: params.slice(), prefixLength: depth === 0 ? 0 : ends[depth - 1]! };
        }
      }
      if (depth === segments.length) return;
      const segment = segments[depth]!;
      const next = node.literal.get(segment);
      if (next) visit(next, depth + 1, literals + 1);
      if (node.param) {
        params.push([node.paramName!, decodeParam(segment)]);
        visit(node.param, depth + 1, literals);
        params.pop();
      }
    };
    visit(this.root, 0, 0);
    return best;
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
