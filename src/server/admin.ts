import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { OWN_ANSWER_HEADERS } from '../respond/problem.js';
import type { Plan } from '../route/compile.js';
import { createAddressSet, normalizeIp, type AddressSet } from './addresses.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ClusterReadiness, WorkerReadiness } from './cluster-readiness.js';

export interface AdminState {
  plan(): Plan;
  listenersBound(): boolean;
  metrics: Metrics;
  log: Logger;
  /**
   * In a worker of gatehouse's own cluster: the readiness of every listening worker, through
   * the primary (null when the primary did not answer in time). Absent: this process answers
   * for itself.
   */
  clusterReadiness?: () => Promise<ClusterReadiness | null>;
}

/** This process's readiness: config loaded, listeners bound, every area ready. */
export function localReadiness(state: Pick<AdminState, 'plan' | 'listenersBound'>): WorkerReadiness {
  const readiness = state.plan().readiness();
  const bound = state.listenersBound();
  return { ready: readiness.ready && bound, listeners: bound ? 'bound' : 'not bound', details: readiness.details ?? {} };
}

/**
 * The admin listener: `/healthz` (process up), `/readyz` (config loaded, listeners bound, and
 * every area ready — details say why not; in a cluster, every listening worker), `/metrics`
 * (Prometheus), plus area endpoints such as `/.well-known/jwks.json`.
 */
export function createAdminServer(state: AdminState): http.Server {
  return http.createServer({ requireHostHeader: false }, (req, res) => {
    handle(state, req, res).catch((err) => {
      state.log.error({ err }, 'admin request failed');
      if (!res.headersSent) json(res, 500, { status: 'error' });
      else res.destroy();
    });
  });
}

/** `admin.allowFrom` per plan (a reload brings a new list). */
const allowedByPlan = new WeakMap<Plan, AddressSet | null>();

function adminAllows(plan: Plan, ip: string): boolean {
  let allowed = allowedByPlan.get(plan);
  if (allowed === undefined) {
    const entries = plan.config?.admin?.allowFrom;
    allowed = entries ? createAddressSet(entries) : null;
    allowedByPlan.set(plan, allowed);
  }
  return allowed === null || allowed.has(ip);
}

async function handle(state: AdminState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const peer = normalizeIp(req.socket.remoteAddress ?? '');
  if (!adminAllows(state.plan(), peer)) {
    state.log.warn({ client_ip: peer, path }, 'admin request from an address outside admin.allowFrom refused');
    return json(res, 403, { status: 'forbidden' });
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { status: 'method not allowed' }, { allow: 'GET, HEAD' });
  if (path === '/healthz') return json(res, 200, { status: 'ok' });
  if (path === '/readyz') {
    if (state.clusterReadiness) {
      const merged = await state.clusterReadiness();
      if (merged === null) return json(res, 503, { status: 'not ready', detail: 'the cluster primary did not answer' });
      const workers = Object.fromEntries(Object.entries(merged.workers).map(([pid, { ready, ...rest }]) => [pid, { status: ready ? 'ready' : 'not ready', ...rest }]));
      return json(res, merged.ready ? 200 : 503, { status: merged.ready ? 'ready' : 'not ready', workers });
    }
    const { ready, listeners, details } = localReadiness(state);
    return json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', listeners, details });
  }
  if (path === '/metrics') {
    let body: string;
    try {
      body = await state.metrics.scrape();
    } catch (err) {
      // A cluster scrape that could not reach every worker: a failed scrape, never one
      // worker's counts passed off as the whole gateway's.
      state.log.warn({ err }, 'metrics of every worker could not be gathered');
      return json(res, 503, { status: 'metrics unavailable', detail: (err as Error).message });
    }
    res.writeHead(200, { 'content-type': state.metrics.registry.contentType });
    res.end(body);
    return;
  }
  for (const area of state.plan().areas) {
    if (area.handleAdmin && (await area.handleAdmin(req, res))) return;
  }
  json(res, 404, { status: 'not found' });
}

const OWN_HEADER_OBJECT: Readonly<Record<string, string>> = Object.fromEntries(OWN_ANSWER_HEADERS);

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...OWN_HEADER_OBJECT, 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
