import { createRequire } from 'node:module';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { inGatehouseCluster, workerScrape } from './cluster-metrics.js';
import { eventLoopLagMetric } from './event-loop.js';
import { gcDurationMetric } from './gc.js';

const require = createRequire(import.meta.url);
const PREFIX = 'gatehouse_';

/**
 * prom-client's default metrics (process CPU, memory, handles, heap, version) one by one, except
 * `gc`: its PerformanceObserver runs JavaScript for every collection, which costs the proxied
 * path ≈ 4% (issue 8); the same histogram comes from {@link gcDurationMetric}. And except
 * `eventLoopLag`, whose event-loop monitor could not be stopped; the same gauges come from
 * {@link eventLoopLagMetric}, stopped with the gateway.
 * Each default metric is a module of prom-client taking `(registry, config)`; a prom-client
 * without one fails here, at start-up, not silently.
 */
function defaultMetrics(registry: Registry): { stop(): void } {
  for (const name of collectDefaultMetrics.metricsList) {
    if (name === 'gc' || name === 'eventLoopLag') continue; // (the list already leaves out what this Node lacks)
    const register = require(`prom-client/lib/metrics/${name}`) as (registry: Registry, config: object) => void;
    register(registry, { prefix: PREFIX });
  }
  const background = [gcDurationMetric(registry, PREFIX), eventLoopLagMetric(registry, PREFIX, 10)];
  return { stop: () => background.forEach((b) => b.stop()) };
}

/**
 * The gateway's Prometheus metrics. Names are `gatehouse_<thing>_<unit>`; labels are bounded
 * (route names, issuer names, codes), never paths or tokens.
 *
 * @example
 * ```ts
 * const metrics = createMetrics();
 * metrics.recordRequest('orders', 200, 0.004);
 * ```
 */
export interface Metrics {
  readonly registry: Registry;
  /**
   * The text for a `/metrics` scrape: this process's registry, or, in a worker of
   * `gatehouse start --workers N`, every worker's merged through the primary.
   */
  scrape(): Promise<string>;
  /** Stop what runs in the background (the GC profiler's timer, the event-loop monitor); the registry stays readable. */
  close(): void;
  /**
   * Count one answered request (`gatehouse_requests_total{route,status}`) and its duration
   * (`gatehouse_request_duration_seconds{route}`). Hot path: plain numbers per route, turned into
   * Prometheus series only when /metrics is scraped (no label hashing per request).
   */
  recordRequest(route: string, status: number, seconds: number): void;
  readonly denials: Counter<'route' | 'code'>;
  /**
   * Time an upstream took to send its response head (`gatehouse_upstream_duration_seconds{upstream}`),
   * for every answer that came from it. Hot path, like {@link recordRequest}.
   */
  recordUpstream(upstream: string, seconds: number): void;
  /** `gatehouse_in_flight_requests`: read from `count()` when scraped (nothing per request). */
  inFlight(count: () => number): void;
  /** Extra counters areas register by name (e.g. `gatehouse_jwks_fetch_total`). */
  counter(name: string, help: string, labelNames?: string[]): Counter<string>;
  /**
   * `aggregator`: how the workers' values merge in a cluster scrape (default `sum`; `min` for
   * an expiry time, `max` or `first` for a state every worker holds alike).
   */
  gauge(name: string, help: string, labelNames?: string[], aggregator?: GaugeAggregator): Gauge<string>;
}

export type GaugeAggregator = 'sum' | 'min' | 'max' | 'first' | 'average';

/** A fresh registry per gateway instance (tests run several in one process). */
export function createMetrics(options: { defaultMetrics?: boolean; cluster?: boolean } = {}): Metrics {
  const registry = new Registry();
  const background = options.defaultMetrics ? defaultMetrics(registry) : null;
  const merged = options.cluster ? workerScrape(registry) : null;
  const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const counters = new Map<string, Counter<string>>();
  const gauges = new Map<string, Gauge<string>>();
  return {
    registry,
    close() {
      background?.stop();
    },
    scrape: merged ?? (() => registry.metrics()),
    recordRequest: requestStats(registry, buckets),
    denials: new Counter({ name: 'gatehouse_denials_total', help: 'Requests refused by gatehouse, by route and error code.', labelNames: ['route', 'code'], registers: [registry] }),
    recordUpstream: upstreamStats(registry, buckets),
    inFlight(count) {
      new Gauge({
        name: 'gatehouse_in_flight_requests',
        help: 'Requests being processed (received, not yet answered or abandoned).',
        registers: [registry],
        collect() {
          this.set(count());
        },
      });
    },
    counter(name, help, labelNames = []) {
      let c = counters.get(name);
      if (!c) {
        c = new Counter({ name, help, labelNames, registers: [registry] });
        counters.set(name, c);
      }
      return c;
    },
    gauge(name, help, labelNames = [], aggregator = 'sum') {
      let g = gauges.get(name);
      if (!g) {
        g = new Gauge({ name, help, labelNames, aggregator, registers: [registry] });
        gauges.set(name, g);
      }
      return g;
    },
  };
}

/** A histogram's cells for one label value: non-cumulative counts per bucket (last: +Inf). */
interface Cells {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

interface RouteStats extends Cells {
  readonly statuses: Map<number, number>;
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

function observe(cells: Cells, bounds: readonly number[], seconds: number): void {
  let i = 0;
  while (i < bounds.length && seconds > bounds[i]!) i++;
  cells.buckets[i]!++;
  cells.sum += seconds;
  cells.count++;
}

/**
 * Register a histogram whose cells live in `series` (label value → cells) and are turned into
 * Prometheus samples only when scraped: observing costs a Map lookup and three additions, no
 * label hashing (issue 8).
 */
function registerHistogram(registry: Registry, name: string, help: string, label: string, bounds: readonly number[], series: Map<string, Cells>): void {
  registry.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: MetricValue[] = [];
      for (const [labelValue, cells] of series) {
        let cumulative = 0;
        for (let i = 0; i < bounds.length; i++) {
          cumulative += cells.buckets[i]!;
          values.push({ value: cumulative, labels: { le: bounds[i]!, [label]: labelValue }, metricName: `${name}_bucket` });
        }
        values.push({ value: cells.count, labels: { le: '+Inf', [label]: labelValue }, metricName: `${name}_bucket` });
        values.push({ value: cells.sum, labels: { [label]: labelValue }, metricName: `${name}_sum` });
        values.push({ value: cells.count, labels: { [label]: labelValue }, metricName: `${name}_count` });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
    reset: () => series.clear(),
  } as never);
}

/** Per-route request counters and a duration histogram, exported at scrape time. */
function requestStats(registry: Registry, bounds: readonly number[]): (route: string, status: number, seconds: number) => void {
  const routes = new Map<string, RouteStats>();
  const requestsName = 'gatehouse_requests_total';
  const requestsHelp = 'Requests answered, by route and status.';
  registry.registerMetric({
    name: requestsName,
    help: requestsHelp,
    type: 'counter',
    aggregator: 'sum',
    get: async () => {
      const values: MetricValue[] = [];
      for (const [route, stats] of routes) for (const [status, n] of stats.statuses) values.push({ value: n, labels: { route, status } });
      return { name: requestsName, help: requestsHelp, type: 'counter', values, aggregator: 'sum' };
    },
    reset: () => routes.clear(),
  } as never);
  registerHistogram(registry, 'gatehouse_request_duration_seconds', 'Time from request to response end.', 'route', bounds, routes);
  return function recordRequest(route: string, status: number, seconds: number): void {
    let stats = routes.get(route);
    if (stats === undefined) {
      stats = { statuses: new Map(), buckets: new Float64Array(bounds.length + 1), sum: 0, count: 0 };
      routes.set(route, stats);
    }
    stats.statuses.set(status, (stats.statuses.get(status) ?? 0) + 1);
    observe(stats, bounds, seconds);
  };
}

/** Per-upstream time to the response head, exported at scrape time. */
function upstreamStats(registry: Registry, bounds: readonly number[]): (upstream: string, seconds: number) => void {
  const upstreams = new Map<string, Cells>();
  registerHistogram(registry, 'gatehouse_upstream_duration_seconds', 'Time from sending the request upstream to its response head, by upstream.', 'upstream', bounds, upstreams);
  return function recordUpstream(upstream: string, seconds: number): void {
    let cells = upstreams.get(upstream);
    if (cells === undefined) {
      cells = { buckets: new Float64Array(bounds.length + 1), sum: 0, count: 0 };
      upstreams.set(upstream, cells);
    }
    observe(cells, bounds, seconds);
  };
}
