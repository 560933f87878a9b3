import { describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
import { eventLoopLagMetric } from '../../src/telemetry/event-loop.js';
import { gcDurationMetric } from '../../src/telemetry/gc.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

setFlagsFromString('--expose-gc');
const forceGc = runInNewContext('gc') as () => void;

function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('GC duration metric (V8 GC profiler, no per-collection JavaScript)', () => {
  it('counts collections by kind with their durations, read at scrape time', async () => {
    const registry = new Registry();
    const gc = gcDurationMetric(registry, 'test_', 60_000);
    try {
      forceGc();
      forceGc();
      const text = await registry.metrics();
      expect(text).toContain('# TYPE test_nodejs_gc_duration_seconds histogram');
      expect(sample(text, 'test_nodejs_gc_duration_seconds_count{kind="major"}')).toBeGreaterThanOrEqual(2);
      expect(sample(text, 'test_nodejs_gc_duration_seconds_sum{kind="major"}')).toBeGreaterThan(0);
      // A second scrape adds only what happened since the first.
      const again = await registry.metrics();
      expect(sample(again, 'test_nodejs_gc_duration_seconds_count{kind="major"}')).toBe(sample(text, 'test_nodejs_gc_duration_seconds_count{kind="major"}'));
    } finally {
      gc.stop();
    }
  });

  it('stops recording once stopped (a closed gateway keeps no profiler running)', async () => {
    const registry = new Registry();
    const gc = gcDurationMetric(registry, 'test_', 60_000);
    forceGc();
    const before = sample(await registry.metrics(), 'test_nodejs_gc_duration_seconds_count{kind="major"}');
    gc.stop();
    gc.stop();
    forceGc();
    const after = sample(await registry.metrics(), 'test_nodejs_gc_duration_seconds_count{kind="major"}');
    expect(after).toBe(before);
  });
});

/** Hold the event loop for `ms` (what a slow synchronous step does to every request). */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('event-loop lag gauges', () => {
  it('show the delays since the last scrape: a 120 ms stall in max and p99, gone from the next scrape', async () => {
    const registry = new Registry();
    const lag = eventLoopLagMetric(registry, 'test_', 10);
    try {
      await tick(30);
      block(120);
      await tick(30);
      const text = await registry.metrics();
      expect(sample(text, 'test_nodejs_eventloop_lag_max_seconds')).toBeGreaterThanOrEqual(0.1);
      expect(sample(text, 'test_nodejs_eventloop_lag_p99_seconds')).toBeGreaterThanOrEqual(0.1);
      expect(sample(text, 'test_nodejs_eventloop_lag_min_seconds')).toBeLessThan(0.1);
      expect(sample(text, 'test_nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
      await tick(50);
      const next = await registry.metrics();
      expect(sample(next, 'test_nodejs_eventloop_lag_max_seconds')).toBeLessThan(0.1);
      for (const name of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) expect(next).toContain(`# TYPE test_nodejs_eventloop_lag_${name}_seconds gauge`);
    } finally {
      lag.stop();
    }
  });

  it('stop sampling when stopped (a closed gateway leaves no monitor running)', async () => {
    const registry = new Registry();
    const lag = eventLoopLagMetric(registry, 'test_', 10);
    await tick(30);
    const before = sample(await registry.metrics(), 'test_nodejs_eventloop_lag_max_seconds');
    lag.stop();
    lag.stop();
    // (A running monitor loses the first interval after the reset a scrape does: wait it out.)
    await tick(30);
    block(120);
    await tick(30);
    const after = await registry.metrics();
    // A running monitor would have recorded the stall (the test above); a stopped one records nothing.
    expect(sample(after, 'test_nodejs_eventloop_lag_max_seconds')).toBe(before);
    expect(before).toBeLessThan(0.1);
  });

  it('are stopped with the gateway metrics (createMetrics().close())', async () => {
    const metrics = createMetrics({ defaultMetrics: true });
    await tick(30);
    await metrics.registry.metrics();
    metrics.close();
    await tick(30);
    block(120);
    await tick(30);
    expect(sample(await metrics.registry.metrics(), 'gatehouse_nodejs_eventloop_lag_max_seconds')).toBeLessThan(0.1);
  });
});

describe('default metrics', () => {
  it("keep prom-client's process, heap, event-loop and version metrics next to the GC histogram", async () => {
    const metrics = createMetrics({ defaultMetrics: true });
    try {
      forceGc();
      const text = await metrics.registry.metrics();
      for (const name of [
        'gatehouse_process_cpu_seconds_total',
        'gatehouse_process_start_time_seconds',
        'gatehouse_process_resident_memory_bytes',
        'gatehouse_nodejs_eventloop_lag_seconds',
        'gatehouse_nodejs_active_handles_total',
        'gatehouse_nodejs_heap_size_used_bytes',
        'gatehouse_nodejs_heap_space_size_used_bytes',
        'gatehouse_nodejs_version_info',
        'gatehouse_nodejs_gc_duration_seconds_count',
      ]) {
        expect(text, name).toContain(`${name}`);
      }
      // One GC histogram only: prom-client's own (a PerformanceObserver) is not registered.
      expect(text.match(/^# TYPE gatehouse_nodejs_gc_duration_seconds histogram$/gm)).toHaveLength(1);
      // The event-loop gauges once each, gatehouse's own (prom-client's monitor cannot be stopped).
      for (const name of ['', '_min', '_max', '_mean', '_stddev', '_p50', '_p90', '_p99']) {
        expect(text.match(new RegExp(`^# TYPE gatehouse_nodejs_eventloop_lag${name}_seconds gauge$`, 'gm')), name).toHaveLength(1);
      }
    } finally {
      metrics.close();
    }
  });
});
