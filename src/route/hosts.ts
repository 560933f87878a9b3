import { isIPv4, isIPv6 } from 'node:net';
import { createRouteTable, type MatchResult, type RouteTable } from './match.js';

/**
 * Host-based routing (`routes[].hosts`): a route that names hosts is only reachable through a
 * request to one of them; a route without `hosts` through any. Among the routes a request's host
 * can reach, the most specific path wins as always; on the same path a route naming the host
 * exactly comes before one matching it by a wildcard (the longest suffix first), which comes
 * before one without `hosts`, each group in config order.
 *
 * One {@link RouteTable} per host the config names (exact, or a wildcard's suffix) and one for
 * every other host, all built at load: a request costs one host normalization and one map lookup
 * (plus a suffix test per wildcard when its host is not named exactly).
 *
 * @example
 * ```ts
 * const table = createHostRouteTable([{ path: '/', methods: null, hosts: ['api.example.com'], route: 'api' }]);
 * table.match('API.example.com:8443', 'GET', '/orders'); // { kind: 'route', route: 'api', … }
 * table.match('other.example.com', 'GET', '/orders');    // { kind: 'not-found' }
 * ```
 */
export interface HostRouteTable<R> {
  match(host: string | undefined, method: string, path: string): MatchResult<R>;
}

interface HostedRoute<R> {
  readonly path: string;
  readonly methods: readonly string[] | null;
  /** Only this path, not the paths under it (`routes[].exact`). */
  readonly exact?: boolean;
  /** Lowercase names, `*.suffix` wildcards or IP literals; null (or absent): every host. */
  readonly hosts?: readonly string[] | null;
  readonly route: R;
}

export function createHostRouteTable<R>(routes: readonly HostedRoute<R>[]): HostRouteTable<R> {
  if (routes.every((r) => r.hosts === null || r.hosts === undefined)) {
    // No route names a host (the usual config): one table, the host not even read.
    const only = createRouteTable(routes.map((r) => ({ path: r.path, methods: r.methods, route: r.route, exact: r.exact })));
    return { match: (_host, method, path) => only.match(method, path) };
  }
  const exactNames = new Set<string>();
  const suffixes = new Set<string>();
  for (const r of routes) {
    for (const h of r.hosts ?? []) {
      if (h.startsWith('*.')) suffixes.add(h.slice(1));
      else exactNames.add(h);
    }
  }
  // A route's rank for a table: 0 names the host, 1 + (room for suffixes) by a wildcard, last without hosts.
  const build = (rank: (r: HostedRoute<R>) => number): RouteTable<R> => {
    const ranked = routes.map((r, i) => ({ r, i, k: rank(r) })).filter((x) => x.k >= 0);
    ranked.sort((a, b) => a.k - b.k || a.i - b.i);
    return createRouteTable(ranked.map(({ r }) => ({ path: r.path, methods: r.methods, route: r.route, exact: r.exact })));
  };
  const ANY = 1_000_000;
  /** How a route's hosts match `name`: 0 exactly, else 1 + (longest suffix first), -1 not at all. */
  const rankFor = (hosts: readonly string[] | null | undefined, name: string): number => {
    if (hosts === null || hosts === undefined) return ANY;
    let best = -1;
    for (const h of hosts) {
      if (h === name) return 0;
      if (h.startsWith('*.') && wildcardMatches(h.slice(1), name)) {
        const k = 1 + (ANY - 2 - h.length);
        if (best === -1 || k < best) best = k;
      }
    }
    return best;
  };
  const exact = new Map<string, RouteTable<R>>();
  for (const name of exactNames) exact.set(name, build((r) => rankFor(r.hosts, name)));
  // A wildcard's table serves names no exact host and no longer wildcard took: the routes whose
  // wildcards match every such name are those that match the wildcard written as a name (`*.a.b`
  // matches `*.b`'s suffix, never a longer one), and a route naming the same wildcard ranks as exact.
  const wildcards = [...suffixes]
    .sort((a, b) => b.length - a.length)
    .map((suffix) => ({ suffix, table: build((r) => rankFor(r.hosts, `*${suffix}`)) }));
  // Every other host (none too): the routes without hosts ('' is no route's host).
  const fallback = build((r) => rankFor(r.hosts, ''));
  return {
    match(host, method, path) {
      const name = hostKey(host);
      const table = exact.get(name) ?? wildcardTable(wildcards, name) ?? fallback;
      return table.match(method, path);
    },
  };
}

function wildcardTable<R>(wildcards: readonly { suffix: string; table: RouteTable<R> }[], name: string): RouteTable<R> | undefined {
  for (let i = 0; i < wildcards.length; i++) {
    if (wildcardMatches(wildcards[i]!.suffix, name)) return wildcards[i]!.table;
  }
  return undefined;
}

/** `*.example.com` (suffix `.example.com`) matches `a.example.com` and `a.b.example.com`, never `example.com`. */
function wildcardMatches(suffix: string, name: string): boolean {
  return name.length > suffix.length && name.endsWith(suffix);
}

/**
 * The host a request is routed by: its `Host` (or HTTP/2 `:authority`) lowercased, without the
 * port and a trailing dot. '' when it has none (HTTP/1.0).
 *
 * @example
 * ```ts
 * hostKey('API.Example.com.:8443'); // 'api.example.com'
 * hostKey('[::1]:8080');             // '[::1]'
 * ```
 */
export function hostKey(host: string | undefined): string {
  if (host === undefined || host === '') return '';
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    end = host.indexOf(']') + 1 || host.length;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  if (host.charCodeAt(end - 1) === 46 /* . */) end--;
  const name = end === host.length ? host : host.slice(0, end);
  // Hot path: Host is nearly always lowercase already.
  return /[A-Z]/.test(name) ? name.toLowerCase() : name;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Check one `routes[].hosts` entry: a DNS name, `*.` and a name (any subdomain of it, at any
 * depth), an IPv4 address or a bracketed IPv6 address; no port. Returns the problem, or undefined.
 *
 * @example
 * ```ts
 * checkRouteHost('*.example.com'); // undefined
 * checkRouteHost('api.example.com:443'); // '"api.example.com:443" has a port: …'
 * ```
 */
export function checkRouteHost(entry: string): string | undefined {
  const lower = entry.toLowerCase();
  if (lower !== entry) return `"${entry}" must be lowercase (hosts match case-insensitively; write them as ${lower})`;
  if (entry.startsWith('[')) {
    return entry.endsWith(']') && isIPv6(entry.slice(1, -1)) ? undefined : `"${entry}" is not a bracketed IPv6 address`;
  }
  if (isIPv6(entry)) return `"${entry}" is an IPv6 address: write it in brackets, as a Host header carries it ([${entry}])`;
  if (/:\d*$/.test(entry)) return `"${entry}" has a port: a route matches its hosts on any port (bind listeners per port instead)`;
  if (isIPv4(entry)) return undefined;
  const name = entry.startsWith('*.') ? entry.slice(2) : entry;
  if (name.includes('*')) return `"${entry}" has a wildcard that is not a leading "*." (one wildcard, for every subdomain: *.example.com)`;
  const labels = name.split('.');
  if (name.length > 253 || labels.some((l) => !LABEL.test(l))) return `"${entry}" is not a host name (letters, digits and hyphens in dot-separated labels)`;
  if (entry.startsWith('*.') && labels.length < 2) return `"${entry}" would match every name under a top-level domain`;
  return undefined;
}
