/**
 * The token handler (issue 7): a backend-for-frontend for browser apps at the gateway.
 *
 * - The OAuth agent (`handle` hook, before route matching) answers the JSON endpoints under
 *   `tokenHandler.basePath` and CORS preflights for cookie routes.
 * - The OAuth proxy (`credential` slot of routes with `auth: cookie` / `cookie-only`) turns the
 *   encrypted cookie into `ctx.token`; authn then validates it like any bearer token.
 *
 * docs/token-handler.md has the sequence diagram.
 */
import { GatehouseError, type ConfigIssue } from '../errors.js';
import type { AreaFactory, AreaRuntime } from '../pipeline/runtime.js';
import { createHostRouteTable } from '../route/hosts.js';
import { requestHost } from '../route/host.js';
import type { RouteConfig } from '../config/types.js';
import { sendPreflight } from '../respond/cors.js';
import { sendProblem } from '../respond/problem.js';
import { createOAuthAgent } from './token-handler/agent.js';
import { createTokenHandlerCore } from './token-handler/core.js';
import { createOidcClient } from './token-handler/oidc-client.js';
import { createCookieCredentialStage, preflight } from './token-handler/proxy.js';

/**
 * Build the token-handler area. Without a `tokenHandler` section it contributes nothing.
 *
 * @example
 * ```ts
 * const area = await createTokenHandlerArea(config, services);
 * if (await area.handle?.(ctx, req, res)) return; // an agent endpoint or a preflight
 * ```
 */
export const createTokenHandlerArea: AreaFactory = (config, services) => {
  const th = config.tokenHandler;
  if (!th) return { name: 'token-handler' };
  const issuer = config.issuers.find((i) => i.name === th.issuer);
  if (!issuer) {
    const issue: ConfigIssue = { file: config.file, line: 0, column: 0, path: 'tokenHandler.issuer', message: 'names no issuer' };
    return { name: 'token-handler', issues: [issue] };
  }
  let client;
  try {
    client = createOidcClient(th, issuer, config.baseDir, services.now);
  } catch (err) {
    const issue: ConfigIssue = { file: config.file, line: 0, column: 0, path: `issuers.${issuer.name}.tls`, message: `cannot be read: ${(err as Error).message}` };
    return { name: 'token-handler', issues: [issue] };
  }
  const log = services.log.child({ area: 'token-handler' });
  const core = createTokenHandlerCore(th, client, { log, now: services.now, metrics: services.metrics });
  const agent = createOAuthAgent(core);

  // Preflights for cookie routes: match like the gateway does (the most specific path decides).
  const cookieRoutes = config.routes.some((r) => r.auth !== 'bearer' && !r.public);
  const table = createHostRouteTable<RouteConfig>(config.routes.map((r) => ({ path: r.path, methods: r.methods, hosts: r.hosts, route: r })));
  const agentBase = th.basePath;
  const agentPrefix = th.basePath + '/';
  const realm = config.gateway.realm;

  const runtime: AreaRuntime = {
    name: 'token-handler',
    stagesFor(route) {
      if (route.public || route.auth === 'bearer') return {};
      return { credential: createCookieCredentialStage(core, route.auth) };
    },
    handle(ctx, req, res) {
      // Runs for every request before routing: decide synchronously when it is not ours.
      const p = ctx.path;
      if (p === agentBase || p.startsWith(agentPrefix)) return agent(ctx, req, res);
      if (!cookieRoutes || ctx.method !== 'OPTIONS') return false;
      const requested = ctx.headers['access-control-request-method'];
      if (typeof requested !== 'string') return false;
      // The route the real request will take decides (the most specific path, that method).
      const match = table.match(requestHost(ctx.headers), requested, p);
      if (match.kind !== 'route' || match.route.auth === 'bearer' || match.route.public) return false;
      const answer = preflight(core, ctx, null);
      if (answer instanceof GatehouseError) {
        core.requests.inc({ endpoint: 'preflight', outcome: answer.code });
        ctx.log.info({ req_id: ctx.id, endpoint: 'preflight', granted: false, reason: answer.code }, 'preflight from an untrusted origin');
        sendProblem(res, answer, ctx.id, realm, ctx.responseHeaders);
        return true;
      }
      core.requests.inc({ endpoint: 'preflight', outcome: 'ok' });
      sendPreflight(res, ctx, answer.headers);
      return true;
    },
    async start() {
      // Warm the discovery cache; a dead authorization server must not stop the gateway.
      await client.metadata().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'token handler: discovery failed; retrying on demand'));
    },
    readiness() {
      return { ready: true, details: client.status() };
    },
    async close() {
      await client.close();
    },
  };
  return runtime;
};
