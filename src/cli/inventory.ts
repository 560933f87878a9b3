import type { GatehouseConfig, RouteConfig } from '../config/types.js';
import { createHostRouteTable } from '../route/hosts.js';
import { openApiRoutes, readDocumentFile, UNREADABLE, type GeneratedRoute } from './openapi-routes.js';

/**
 * What an inventory found: `exposed` — the gateway takes what the document does not describe,
 * or lets an operation through with fewer checks than the document asks (OWASP API9, improper
 * inventory: shadow endpoints, an operation made public); `unrouted` — an operation the gateway
 * does not route (its requests get 404 or 405: refused, so informational).
 */
export interface InventoryFinding {
  readonly kind: 'exposed' | 'unrouted';
  readonly text: string;
}

export interface Inventory {
  readonly operations: number;
  readonly routed: number;
  readonly findings: readonly InventoryFinding[];
}

/** Methods gatehouse takes with GET, or answers itself: not compared with a document. */
const IMPLIED = new Set(['HEAD', 'OPTIONS']);

/** A path with its parameters' names dropped, for comparing route and operation paths. */
const shape = (path: string) => path.replace(/\{[^{}]*\}/g, '{}');

/**
 * Compare the routes a config has (all, or those to `upstream`) with the operations of an
 * OpenAPI document, as `gatehouse openapi` would route them (`prefix` as there). For each
 * operation: the route a request to it takes (matched as the gateway matches, a sample value in
 * each `{param}`; routes limited to `hosts` are not seen), and whether that route checks what the
 * document asks — a token (not public) with its scopes, its request body, query, path and header
 * parameters. For each route: whether it takes more than the document describes — every path
 * under it (not `exact`), every method, or a method or path no operation has.
 *
 * @example
 * ```ts
 * const { findings } = inventoryOf(doc, loadConfigFile('gatehouse.yaml'), { upstream: 'orders' });
 * ```
 */
export function inventoryOf(doc: unknown, config: GatehouseConfig, options: { upstream?: string | undefined; prefix?: string | undefined } = {}): Inventory {
  const { routes: operations } = openApiRoutes(doc, { reference: 'document', upstream: options.upstream ?? '-', prefix: options.prefix });
  const routes = config.routes.filter((r) => options.upstream === undefined || r.upstream === options.upstream);
  const table = createHostRouteTable(routes.map((r) => ({ path: r.path, methods: r.methods, hosts: r.hosts, exact: r.exact === true, route: r })));
  const findings: InventoryFinding[] = [];
  let routed = 0;
  for (const op of operations) {
    const method = op.methods[0]!;
    const where = `${method} ${op.path}`;
    const match = table.match(undefined, method, op.path.replace(/\{[^{}]*\}/g, 'gatehouse-sample'));
    if (match.kind !== 'route') {
      findings.push({ kind: 'unrouted', text: `${where}: no route takes it (the gateway answers ${match.kind === 'not-found' ? 404 : 405})` });
      continue;
    }
    routed++;
    for (const gap of weakerChecks(match.route, op)) findings.push({ kind: 'exposed', text: `${where}: route ${match.route.name} ${gap}` });
  }
  for (const route of routes) {
    for (const excess of beyondDocument(route, operations)) findings.push({ kind: 'exposed', text: `route ${route.name} (${route.path}) ${excess}` });
  }
  return { operations: operations.length, routed, findings };
}

/** What the route leaves unchecked that the document asks for the operation. */
function weakerChecks(route: RouteConfig, op: GeneratedRoute): string[] {
  const gaps: string[] = [];
  if (route.public && !op.public) {
    gaps.push(`is public; the document requires a token${op.scopes ? ` with ${op.scopes.join(' ')}` : ''}`);
  } else if (!route.public && op.scopes) {
    const missing = op.scopes.filter((s) => !route.scopes.includes(s));
    if (missing.length > 0) gaps.push(`does not require ${missing.join(' ')}, which the document does`);
  }
  if (op.requestBody?.schema !== undefined && (route.requestBody == null || route.requestBody.schema === null)) gaps.push('checks no request body against a schema; the document gives one');
  if (op.query && !route.query) gaps.push('checks no query; the document describes its parameters');
  if (op.params && !route.params) gaps.push('checks no path parameters; the document gives their schemas');
  if (op.requestHeaders && !route.requestHeaders) gaps.push('checks no request headers; the document describes header parameters');
  return gaps;
}

/** What the route takes that no operation describes. */
function beyondDocument(route: RouteConfig, operations: readonly GeneratedRoute[]): string[] {
  const out: string[] = [];
  if (route.exact !== true) {
    out.push('takes every path under it (not exact); the document describes only its operations');
  }
  const samePath = operations.filter((op) => shape(op.path) === shape(route.path));
  const described = new Set(samePath.map((op) => op.methods[0]!));
  if (route.methods === null) {
    out.push(`takes every method${described.size > 0 ? `; the document describes ${[...described].join(', ')} there` : ''}`);
    return out;
  }
  if (route.exact !== true) return out;
  const extra = route.methods.filter((m) => !IMPLIED.has(m) && !described.has(m));
  if (extra.length > 0) out.push(`takes ${extra.join(', ')} ${route.path}, which the document does not describe`);
  return out;
}

/**
 * `gatehouse inventory FILE --config CONFIG [--upstream NAME] [--prefix /v1] [--strict]`: print
 * the comparison. Exit 0; with `--strict`, 4 when the gateway exposes more than the document
 * (routes beyond it, checks weaker than it asks); 3 for a document that cannot be read.
 */
export function runInventory(
  file: string,
  config: GatehouseConfig,
  options: { upstream?: string | undefined; prefix?: string | undefined; strict: boolean },
  out: { write(text: string): unknown },
  err: { write(text: string): unknown },
): number {
  const doc = readDocumentFile(file, err);
  if (doc === UNREADABLE) return 3;
  let result: Inventory;
  try {
    result = inventoryOf(doc, config, options);
  } catch (e) {
    err.write(`gatehouse: ${file} ${(e as Error).message}\n`);
    return 3;
  }
  const exposed = result.findings.filter((f) => f.kind === 'exposed');
  const unrouted = result.findings.filter((f) => f.kind === 'unrouted');
  out.write(
    `${file} against ${config.file || 'the config'}${options.upstream ? ` (routes to ${options.upstream})` : ''}: ${result.operations} operation(s), ${result.routed} routed; ${exposed.length} exposure(s), ${unrouted.length} not routed\n`,
  );
  for (const f of exposed) out.write(`exposed     ${f.text}\n`);
  for (const f of unrouted) out.write(`not routed  ${f.text}\n`);
  return options.strict && exposed.length > 0 ? 4 : 0;
}
