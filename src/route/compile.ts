import type { GatehouseConfig, RouteConfig } from '../config/types.js';
import { ConfigError, type ConfigIssue, type GatehouseError } from '../errors.js';
import { composeStages, type RequestContext, type Stage } from '../pipeline/context.js';
import type { AreaFactory, AreaRuntime, GatewayServices, Readiness, RouteStages } from '../pipeline/runtime.js';
import { createUpstream, type Upstream } from '../forward/upstream.js';
import { readClientTls } from '../forward/outbound.js';
import { reportClientCertificates } from '../forward/client-certs.js';
import type { UpstreamHeaderOptions } from '../forward/headers.js';
import { createHostRouteTable, type HostRouteTable } from './hosts.js';
import { createBodyCheck, type BodyCheck } from '../validate/request-body.js';
import { createQueryCheck, type QueryCheck } from '../validate/query.js';
import { createResponseCheck, WHOLE_ANSWER_HEADERS, type ResponseCheck } from '../validate/response-body.js';
import type { TracingSettings } from '../telemetry/trace-context.js';
import { gatehouseCookiePrefixes } from '../authn/token-handler/cookie-names.js';

/** A route with its stages built; an absent stage is `null` and costs nothing. */
export interface CompiledRoute {
  readonly name: string;
  readonly index: number;
  readonly config: RouteConfig;
  readonly public: boolean;
  readonly upstream: Upstream;
  readonly preAuth: Stage | null;
  readonly credential: Stage | null;
  readonly authenticate: Stage | null;
  readonly authorize: Stage | null;
  readonly limit: Stage | null;
  /** Max request body in bytes for this route. */
  readonly maxBodySize: number;
  /** Upstream timeout in ms for this route. */
  readonly timeout: number;
  /** Which client headers never reach the upstream on this route. */
  readonly forward: UpstreamHeaderOptions;
  /** `authFailureLimit`: told of each failed authentication on this route; null: not counted. */
  readonly onAuthFailure: ((ctx: RequestContext) => void) | null;
  /** `query`: the query this route accepts; null: not read. */
  readonly queryCheck: QueryCheck | null;
  /** `params`: the path parameters this route accepts; null: not checked. */
  readonly paramsCheck: QueryCheck | null;
  /** `requestHeaders`: the headers this route accepts; null: not checked. */
  readonly headersCheck: QueryCheck | null;
  /** `requestBody`: the JSON bodies this route accepts, read whole and checked before forwarding; null: streamed unread. */
  readonly bodyCheck: BodyCheck | null;
  /** `responseBody`: the upstream's answers this route lets through, held whole and checked; null: streamed unread. */
  readonly responseCheck: ResponseCheck | null;
}

/**
 * The immutable plan a config compiles to: route table, upstream pools and area runtimes.
 * Hot reload builds a new plan and swaps it atomically; the old one is closed after.
 */
export interface Plan {
  readonly config: GatehouseConfig;
  /** Routes by host (`routes[].hosts`) and path. */
  readonly table: HostRouteTable<CompiledRoute>;
  readonly routes: readonly CompiledRoute[];
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly areas: readonly AreaRuntime[];
  /** Areas with a `handle` (requests answered by gatehouse itself, e.g. the token-handler agent). */
  readonly handlers: readonly AreaRuntime[];
  /** What areas add to the answer of a request no route takes (`AreaRuntime.unmatched`). */
  readonly unmatched: readonly Stage[];
  /** `gateway.paths.allowSemicolons`, read once here for normalizeTarget on every request. */
  readonly allowSemicolons: boolean;
  /** `gateway.methodOverride` is not `allow`: a request asking for another method is refused. */
  readonly refuseMethodOverride: boolean;
  /** Some route takes WebSocket connections (`routes[].websocket`): the listeners take upgrades. */
  readonly websocket: boolean;
  /** `tracing`, read once here for every request; null: a client's traceparent passes untouched. */
  readonly tracing: TracingSettings | null;
  /**
   * Requests running on this plan (the runner counts them in and out): after a reload the old
   * plan is closed when its last request is done, not while one still waits in a stage.
   */
  readonly inFlight: { count: number; idle: (() => void) | null };
  start(): Promise<void>;
  readiness(): Readiness;
  close(): Promise<void>;
}

const SLOTS = ['preAuth', 'credential', 'authenticate', 'authorize', 'limit'] as const;

/**
 * Compile a config into a plan. Throws a {@link ConfigError} naming every problem an area found.
 *
 * @example
 * ```ts
 * const plan = await compilePlan(config, services, defaultAreas());
 * await plan.start();
 * ```
 */
export async function compilePlan(config: GatehouseConfig, services: GatewayServices, factories: readonly AreaFactory[]): Promise<Plan> {
  const areas: AreaRuntime[] = [];
  const issues: ConfigIssue[] = [];
  const upstreams = new Map<string, Upstream>();
  // Certificate files of the outbound clients: a clear problem per file, before any client is built.
  const clientTls = readClientTls(config);
  if (clientTls.issues.length > 0) throw new ConfigError(clientTls.issues);
  let forgetClientCertificates: (() => void) | null = null;
  try {
    for (const factory of factories) {
      const area = await factory(config, services);
      areas.push(area);
      if (area.issues) issues.push(...area.issues);
    }
    if (issues.length > 0) throw new ConfigError(issues);

    for (const u of config.upstreams) upstreams.set(u.name, createUpstream(u, config, services));

    const routes: CompiledRoute[] = config.routes.map((route, index) => {
      const slots: Record<(typeof SLOTS)[number], Stage[]> = { preAuth: [], credential: [], authenticate: [], authorize: [], limit: [] };
      let onAuthFailure: ((ctx: RequestContext) => void) | null = null;
      for (const area of areas) {
        const stages: RouteStages | undefined = area.stagesFor?.(route, index);
        if (!stages) continue;
        if (stages.onAuthFailure) onAuthFailure = stages.onAuthFailure;
        for (const slot of SLOTS) {
          const stage = stages[slot];
          if (stage) slots[slot].push(stage);
        }
      }
      return {
        name: route.name,
        index,
        config: route,
        public: route.public,
        upstream: upstreams.get(route.upstream)!,
        preAuth: composeStages(slots.preAuth),
        credential: composeStages(slots.credential),
        authenticate: composeStages(slots.authenticate),
        authorize: composeStages(slots.authorize),
        limit: composeStages(slots.limit),
        maxBodySize: route.maxBodySize ?? config.limits.maxBodySize,
        timeout: route.timeout ?? upstreams.get(route.upstream)!.config.timeout,
        forward: forwardOptions(route, config),
        bodyCheck: route.requestBody ? createBodyCheck(route.requestBody) : null,
        queryCheck: route.query ? createQueryCheck(route.query.schema) : null,
        paramsCheck: route.params ? createQueryCheck(route.params.schema) : null,
        headersCheck: route.requestHeaders ? createQueryCheck(route.requestHeaders.schema) : null,
        responseCheck: route.responseBody ? createResponseCheck(route.responseBody) : null,
        onAuthFailure,
      };
    });
    // Default deny: a non-public route with no authenticate stage would let requests through.
    for (const route of routes) {
      if (!route.public && (!route.authenticate || !route.credential)) {
        throw new Error(`route ${route.name} is not public but has no authentication stage`);
      }
    }

    const table = createHostRouteTable(routes.map((r) => ({ path: r.config.path, methods: r.config.methods, hosts: r.config.hosts, route: r, exact: r.config.exact === true })));
    return {
      config,
      table,
      routes,
      upstreams,
      areas,
      handlers: areas.filter((a) => a.handle),
      unmatched: areas.flatMap((a) => (a.unmatched ? [a.unmatched] : [])),
      // Optional chaining: a config built in code (tests) may lack the section; refusing is the default.
      allowSemicolons: config.gateway.paths?.allowSemicolons === true,
      refuseMethodOverride: config.gateway.methodOverride !== 'allow',
      websocket: config.routes.some((r) => Boolean(r.websocket)),
      tracing: config.tracing ?? null,
      inFlight: { count: 0, idle: null },
      async start() {
        await Promise.all(areas.map((a) => a.start?.()));
        for (const u of upstreams.values()) u.start();
        forgetClientCertificates ??= reportClientCertificates(clientTls.certificates, services, clientTls);
      },
      readiness() {
        let ready = true;
        const details: Record<string, unknown> = {};
        for (const area of areas) {
          const r = area.readiness?.();
          if (!r) continue;
          if (!r.ready) ready = false;
          if (r.details) details[area.name] = r.details;
        }
        // Targets left out after they could not be reached: said, but not a reason to take
        // gatehouse out of rotation (it still serves every other upstream, and retries these).
        const now = Date.now();
        const left: Record<string, string> = {};
        for (const u of upstreams.values()) {
          const down = u.targets.filter((t) => t.downUntil > now);
          if (down.length === 0) continue;
          const unreachable = down.filter((t) => !t.failing).map((t) => t.url);
          const failing = down.filter((t) => t.failing).map((t) => t.url);
          const why = [unreachable.length > 0 ? `unreachable: ${unreachable.join(', ')}` : '', failing.length > 0 ? `failing health checks: ${failing.join(', ')}` : ''];
          left[u.name] = `${down.length} of ${u.targets.length} target(s) left out, ${why.filter(Boolean).join('; ')}`;
        }
        if (Object.keys(left).length > 0) details.upstreams = left;
        return { ready, details };
      },
      async close() {
        forgetClientCertificates?.();
        await Promise.allSettled([...areas.map((a) => a.close?.()), ...[...upstreams.values()].map((u) => u.close())]);
      },
    };
  } catch (err) {
    await Promise.allSettled([...areas.map((a) => a.close?.()), ...[...upstreams.values()].map((u) => u.close())]);
    throw err;
  }
}

/** Protected routes always drop the client's Authorization (the validated token is put back when forwardToken). */
function forwardOptions(route: RouteConfig, config: GatehouseConfig): UpstreamHeaderOptions {
  const strip = new Set<string>();
  if (!route.public) strip.add('authorization');
  for (const header of Object.keys(route.forwardClaims)) strip.add(header.toLowerCase());
  // `tracing`: gatehouse sends the trace headers itself (the client's, checked, or a new trace).
  if (config.tracing) {
    strip.add('traceparent');
    strip.add('tracestate');
  }
  // `headers` (the top level's merged into the route's at load): the client's values of the
  // names a rule sets or removes never reach the upstream.
  const rules = route.headers ?? null;
  const requestSet = rules === null ? [] : Object.entries(rules.request.set);
  for (const name of rules?.request.remove ?? []) strip.add(name);
  // `responseBody`: the answer is checked as it comes, so it must come whole and unencoded — a
  // client's `Range` would get a part of a body no schema reads, its `Accept-Encoding` a body
  // gatehouse cannot read. (A header rule setting these is a config error.)
  if (route.responseBody) {
    for (const name of WHOLE_ANSWER_HEADERS) strip.add(name);
    requestSet.push(['accept-encoding', 'identity']);
  }
  for (const [name] of requestSet) strip.add(name);
  const responseSet = rules === null ? [] : Object.entries(rules.response.set);
  return {
    strip: strip.size > 0 ? strip : null,
    cookiePrefixes: config.tokenHandler ? gatehouseCookiePrefixes(config.tokenHandler.cookiePrefix) : null,
    // With a cors section, gatehouse alone answers CORS on bearer-token and public routes.
    ownsCors: config.cors !== undefined && (route.public || route.auth === 'bearer'),
    requestSet: requestSet.length > 0 ? requestSet : null,
    responseRemove: rules !== null && rules.response.remove.length > 0 ? new Set(rules.response.remove) : null,
    responseSet: responseSet.length > 0 ? responseSet : null,
    // A name the route's rules set or remove is theirs: no default of gatehouse's for it.
    ...answerDefaultsOf(config, new Set([...(rules?.response.remove ?? []), ...responseSet.map(([name]) => name)])),
  };
}

/**
 * `securityHeaders` (on unless turned off): what an upstream's answer gets when it has no header
 * of that name — `X-Content-Type-Options: nosniff` on every answer (a browser never renders
 * JSON as HTML), and `Cache-Control: no-store` on the answer to a request that carried a token
 * (no shared cache keeps one user's data for another).
 */
function answerDefaultsOf(
  config: GatehouseConfig,
  ruled: ReadonlySet<string>,
): { answerDefaults: readonly [string, string][] | null; answerDefaultsWithToken: readonly [string, string][] | null } {
  const settings = config.securityHeaders;
  const always: [string, string][] = settings?.contentTypeOptions === false || ruled.has('x-content-type-options') ? [] : [['x-content-type-options', 'nosniff']];
  const withToken: [string, string][] = settings?.cacheControl === false || ruled.has('cache-control') ? always : [...always, ['cache-control', 'no-store']];
  return { answerDefaults: always.length > 0 ? always : null, answerDefaultsWithToken: withToken.length > 0 ? withToken : null };
}
