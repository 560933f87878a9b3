import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The gateway's Prometheus metrics. Names are `gatehouse_<thing>_<unit>`; labels are bounded
 * (route names, issuer names, codes), never paths or tokens.
 *
 * @example
 * ```ts
 * const metrics = createMetrics();
 * metrics.requests.inc({ route: 'orders', status: '200' });
 * ```
 */
export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status'>;
  readonly denials: Counter<'route' | 'code'>;
  readonly requestDuration: Histogram<'route'>;
  readonly upstreamDuration: Histogram<'upstream'>;
  readonly inFlight: Gauge<'route'>;
  /** Extra counters areas register by name (e.g. `gatehouse_jwks_fetch_total`). */
  counter(name: string, help: string, labelNames?: string[]): Counter<string>;
  gauge(name: string, help: string, labelNames?: string[]): Gauge<string>;
}

/** A fresh registry per gateway instance (tests run several in one process). */
export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'gatehouse_' });
  const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const counters = new Map<string, Counter<string>>();
  const gauges = new Map<string, Gauge<string>>();
  return {
    registry,
    requests: new Counter({ name: 'gatehouse_requests_total', help: 'Requests answered, by route and status.', labelNames: ['route', 'status'], registers: [registry] }),
    denials: new Counter({ name: 'gatehouse_denials_total', help: 'Requests refused by gatehouse, by route and error code.', labelNames: ['route', 'code'], registers: [registry] }),
    requestDuration: new Histogram({ name: 'gatehouse_request_duration_seconds', help: 'Time from request to response head.', labelNames: ['route'], buckets, registers: [registry] }),
    upstreamDuration: new Histogram({ name: 'gatehouse_upstream_duration_seconds', help: 'Time waiting for the upstream response head.', labelNames: ['upstream'], buckets, registers: [registry] }),
    inFlight: new Gauge({ name: 'gatehouse_in_flight_requests', help: 'Requests being processed.', labelNames: ['route'], registers: [registry] }),
    counter(name, help, labelNames = []) {
      let c = counters.get(name);
      if (!c) {
        c = new Counter({ name, help, labelNames, registers: [registry] });
        counters.set(name, c);
      }
      return c;
    },
    gauge(name, help, labelNames = []) {
      let g = gauges.get(name);
      if (!g) {
        g = new Gauge({ name, help, labelNames, registers: [registry] });
        gauges.set(name, g);
      }
      return g;
    },
  };
}
