import './boot/tick-shape.js';
import { watch, type FSWatcher } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import type { DestinationStream, Logger } from 'pino';
import { defaultAreas } from './areas.js';
import { loadConfigFile } from './config/load.js';
import type { GatehouseConfig } from './config/types.js';
import { configAdvice } from './config/advice.js';
import { ConfigError } from './errors.js';
import type { AreaFactory, GatewayServices } from './pipeline/runtime.js';
import { runRequest, type InFlight, type ListenerInfo } from './pipeline/run.js';
import { compilePlan, type Plan } from './route/compile.js';
import { createAdminServer, localReadiness } from './server/admin.js';
import { workerReadiness } from './server/cluster-readiness.js';
import { bindListener, createListener, type BoundListener } from './server/listener.js';
import { createTrustedProxies, type TrustedProxies } from './server/trusted-proxy.js';
import { Tunnels } from './forward/tunnel.js';
import { createLogger } from './telemetry/log.js';
import { inGatehouseCluster } from './telemetry/cluster-metrics.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';

export interface GatewayOptions {
  config: GatehouseConfig;
  /** Where log lines go (default stdout). */
  logDestination?: DestinationStream;
  /** A ready logger instead (overrides logDestination). */
  log?: Logger;
  /** Watch the config file and reload on change (default false; the CLI turns it on). */
  watchConfig?: boolean;
  /** Areas to compile (default: all of gatehouse's). */
  areas?: AreaFactory[];
  /** Clock for the areas (ms since epoch). */
  now?: () => number;
  /** Environment for `${VAR}` expansion when the file is reloaded (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * A running gateway: its listeners, its admin listener and the current plan.
 *
 * @example
 * ```ts
 * const gw = await startGateway({ config: loadConfigFile('gatehouse.yaml') });
 * console.log(gw.url);
 * await gw.close();
 * ```
 */
export interface Gateway {
  /** Base URL of each listener by name. */
  readonly urls: Record<string, string>;
  /** Base URL of the first listener. */
  readonly url: string;
  readonly adminUrl: string | null;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The plan requests are served with right now. */
  plan(): Plan;
  /**
   * Validate and swap in a new config (from the file when none is given). A broken config is
   * logged and thrown; the running plan keeps serving. Listeners are not re-bound.
   */
  reload(config?: GatehouseConfig): Promise<void>;
  /** Reload the certificates of the HTTPS listeners. */
  reloadCertificates(): Promise<void>;
  /** Stop accepting, finish in-flight requests (bounded by limits.shutdownTimeout), close. */
  close(): Promise<void>;
}

/** Start gatehouse with a loaded config. Throws a ConfigError if an area refuses the config. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  let config = options.config;
  const log = options.log ?? createLogger({ level: config.log.level, destination: options.logDestination });
  const metrics = createMetrics({ defaultMetrics: true, cluster: inGatehouseCluster() });
  const services: GatewayServices = { log, metrics, now: options.now ?? Date.now };
  const areas = options.areas ?? defaultAreas();

  let plan: Plan;
  let proxies: TrustedProxies;
  try {
    proxies = createTrustedProxies(config.trustedProxies);
    plan = await startPlan(config, services, areas);
  } catch (err) {
    metrics.close();
    throw err;
  }

  const tunnels = new Tunnels(log, metrics, services.now);
  const inFlight: InFlight = { count: 0, idle: null, tunnels };
  metrics.inFlight(() => inFlight.count);
  const onRequest = (info: ListenerInfo, req: IncomingMessage, res: ServerResponse) => {
    // The plan is read once per request: a reload swaps it for later requests only.
    void runRequest(plan, info, services, proxies, req, res, inFlight);
  };

  const listeners: BoundListener[] = config.listen.map((l) => createListener(l, config, log, onRequest, metrics));
  for (const l of listeners) l.acceptUpgrades(plan.websocket);
  let bound = false;
  let admin: http.Server | null = null;
  let adminUrl: string | null = null;
  try {
    for (const listener of listeners) await bindListener(listener);
    bound = true;
    if (config.admin) {
      const state = { plan: () => plan, listenersBound: () => bound, metrics, log };
      const clusterReadiness = inGatehouseCluster() ? workerReadiness(() => localReadiness(state)) : undefined;
      admin = createAdminServer({ ...state, clusterReadiness });
      const a = config.admin;
      adminUrl = await new Promise<string>((resolve, reject) => {
        admin!.once('error', reject);
        admin!.listen(a.port, a.host, () => {
          const address = admin!.address();
          const port = typeof address === 'object' && address ? address.port : a.port;
          resolve(`http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${port}`);
        });
      });
    }
  } catch (err) {
    for (const l of listeners) l.close();
    admin?.close();
    await plan.close();
    metrics.close();
    throw err;
  }

  const urls: Record<string, string> = {};
  for (const l of listeners) urls[l.name] = l.url;
  log.info({ listeners: urls, admin: adminUrl, routes: plan.routes.length }, 'gatehouse started');
  for (const advice of configAdvice(config)) log.warn(advice.fields, advice.message);

  let reloading: Promise<void> = Promise.resolve();
  const reload = (next?: GatehouseConfig): Promise<void> => {
    const run = async () => {
      const candidate = next ?? (config.file ? loadConfigFile(config.file, options.env) : config);
      // Build everything the new config needs before any of it goes live: a step that fails
      // leaves the running plan, proxies and config untouched (startPlan closes what it built).
      const freshProxies = createTrustedProxies(candidate.trustedProxies);
      const fresh = await startPlan(candidate, services, areas);
      // (admin.allowFrom is read from the plan: it changes with a reload.)
      const bind = (c: GatehouseConfig) => JSON.stringify(c.admin && { host: c.admin.host, port: c.admin.port });
      if (JSON.stringify(candidate.listen) !== JSON.stringify(config.listen) || bind(candidate) !== bind(config)) {
        log.warn('listener or admin changes take effect on restart only');
      }
      // The swap, all at once: nothing between these lines can throw or yield.
      const old = plan;
      plan = fresh;
      proxies = freshProxies;
      config = candidate;
      for (const l of listeners) l.acceptUpgrades(fresh.websocket);
      log.info({ routes: fresh.routes.length }, 'config reloaded');
      // (The listeners are not rebound on a reload: their advice was said at start.)
      for (const advice of configAdvice(config)) if (advice.path[0] !== 'listen') log.warn(advice.fields, advice.message);
      retire(old, config.limits.shutdownTimeout);
    };
    const result = reloading.then(run, run);
    reloading = result.catch(() => undefined);
    return result.catch((err) => {
      log.error({ err: err instanceof ConfigError ? undefined : err, problems: err instanceof ConfigError ? err.issues.length : undefined, message: (err as Error).message }, 'config reload failed; the running config stays');
      throw err;
    });
  };

  let watcher: FSWatcher | null = null;
  if (options.watchConfig && config.file) {
    let timer: NodeJS.Timeout | null = null;
    const base = path.basename(config.file);
    watcher = watch(path.dirname(config.file), (_event, name) => {
      if (name !== base) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload().catch(() => undefined), 200);
    });
    watcher.unref();
  }

  let closing: Promise<void> | null = null;
  const gateway: Gateway = {
    urls,
    url: listeners[0]!.url,
    adminUrl,
    log,
    metrics,
    plan: () => plan,
    reload,
    async reloadCertificates() {
      await Promise.all(listeners.map((l) => l.reloadCertificates?.()));
    },
    close() {
      closing ??= (async () => {
        watcher?.close();
        bound = false;
        for (const l of listeners) l.close();
        if (inFlight.count > 0) {
          await new Promise<void>((resolve) => {
            inFlight.idle = resolve;
            setTimeout(resolve, config.limits.shutdownTimeout).unref();
          });
        }
        for (const l of listeners) l.server.closeAllConnections?.();
        // WebSocket connections are not requests: they end with the process (clients reconnect).
        tunnels.closeAll();
        await new Promise<void>((resolve) => (admin ? admin.close(() => resolve()) : resolve()));
        admin?.closeAllConnections?.();
        await plan.close();
        metrics.close();
        log.info('gatehouse stopped');
        log.flush?.();
      })();
      return closing;
    },
  };
  return gateway;
}

/**
 * Close a plan a reload replaced, once the requests still running on it are done: one waiting
 * in a stage (introspection, a JWKS refetch, Redis) forwards through the old plan's pools when
 * it resumes. Bounded by `limits.shutdownTimeout`, as a shutdown is; after that the plan closes
 * under whatever is left (those requests then fail with a 502).
 */
function retire(old: Plan, timeout: number): void {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    old.inFlight.idle = null;
    clearTimeout(timer);
    void old.close();
  };
  const timer = setTimeout(close, timeout);
  timer.unref();
  if (old.inFlight.count === 0) close();
  else old.inFlight.idle = close;
}

/** Compile a plan and start it; a plan whose start fails is closed before the error is thrown. */
async function startPlan(config: GatehouseConfig, services: GatewayServices, areas: readonly AreaFactory[]): Promise<Plan> {
  const plan = await compilePlan(config, services, areas);
  try {
    await plan.start();
  } catch (err) {
    await plan.close();
    throw err;
  }
  return plan;
}

