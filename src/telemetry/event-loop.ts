import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * The event-loop gauges prom-client's default metrics have: name suffix, help, cluster
 * aggregator, and how the value (nanoseconds) is read off the delay histogram.
 */
const GAUGES: readonly (readonly [string, string, 'min' | 'max' | 'average', (h: IntervalHistogram) => number])[] = [
  ['min', 'The minimum recorded event loop delay.', 'min', (h) => h.min],
  ['max', 'The maximum recorded event loop delay.', 'max', (h) => h.max],
  ['mean', 'The mean of the recorded event loop delays.', 'average', (h) => h.mean],
  ['stddev', 'The standard deviation of the recorded event loop delays.', 'average', (h) => h.stddev],
  ['p50', 'The 50th percentile of the recorded event loop delays.', 'average', (h) => h.percentile(50)],
  ['p90', 'The 90th percentile of the recorded event loop delays.', 'average', (h) => h.percentile(90)],
  ['p99', 'The 99th percentile of the recorded event loop delays.', 'average', (h) => h.percentile(99)],
];

/**
 * `<prefix>nodejs_eventloop_lag_seconds` and its `_min`, `_max`, `_mean`, `_stddev`, `_p50`,
 * `_p90` and `_p99` companions: the same series, help and cluster aggregation as prom-client's
 * default `eventLoopLag` metric, which gatehouse registered until it was found to keep its
 * `monitorEventLoopDelay` sampling every `resolutionMs` for the life of the process, with no way
 * to stop it: every gateway started and closed in one process (an embedding application, a test
 * run) left one more timer firing a hundred times a second. This one stops with the gateway.
 *
 * The percentiles cover the delays since the previous scrape (the histogram is reset at each
 * one); `nodejs_eventloop_lag_seconds` is the delay of a `setImmediate` queued at the scrape
 * (awaited, so a scrape shows its own reading; prom-client's showed the previous scrape's).
 *
 * @example
 * ```ts
 * const lag = eventLoopLagMetric(registry, 'gatehouse_');
 * // … on shutdown:
 * lag.stop();
 * ```
 */
export function eventLoopLagMetric(registry: Registry, prefix: string, resolutionMs = 10): { stop(): void } {
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  // Registered first: a scrape runs this collect before it reads the gauges after it.
  new Gauge({
    name: `${prefix}nodejs_eventloop_lag_seconds`,
    help: 'Lag of event loop in seconds.',
    registers: [registry],
    aggregator: 'average',
    async collect() {
      const start = process.hrtime.bigint();
      // Until the first delay is recorded, and once stopped (disabled and emptied), the
      // histogram holds no sample and reads min 2^63, max 0: the gauges keep what they showed.
      if (histogram.count > 0) {
        for (const [gauge, value] of gauges) gauge.set(value(histogram) / 1e9);
        histogram.reset();
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
    },
  });
  const gauges = GAUGES.map(
    ([suffix, help, aggregator, value]) => [new Gauge({ name: `${prefix}nodejs_eventloop_lag_${suffix}_seconds`, help, registers: [registry], aggregator }), value] as const,
  );
  return {
    stop() {
      histogram.disable();
      histogram.reset();
    },
  };
}
