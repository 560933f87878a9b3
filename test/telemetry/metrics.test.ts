import { describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
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
    } finally {
      metrics.close();
    }
  });
});
