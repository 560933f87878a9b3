import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { request } from 'undici';
import { createAdminServer } from '../../src/server/admin.js';
import { createLogger } from '../../src/telemetry/log.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import type { Plan } from '../../src/route/compile.js';

// The admin listener's /metrics in front of a real registry; a cluster scrape that cannot reach
// every worker is a failed scrape (503), never one worker's counts shown as the gateway's.

let server: http.Server | null = null;

async function serve(metrics: Metrics): Promise<string> {
  const plan = { readiness: () => ({ ready: true }), areas: [] } as unknown as Plan;
  server = createAdminServer({ plan: () => plan, listenersBound: () => true, metrics, log: createLogger({ level: 'silent' }) });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
});

describe('admin /metrics', () => {
  it('answers with what the metrics scrape gives, as Prometheus text', async () => {
    const metrics = createMetrics();
    metrics.recordRequest('orders', 200, 0.002);
    const url = await serve(metrics);
    const res = await request(`${url}/metrics`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(await res.body.text()).toMatch(/^gatehouse_requests_total\{route="orders",status="200"\} 1$/m);
  });

  it('answers 503 when the merged metrics of every worker cannot be gathered', async () => {
    const metrics = createMetrics();
    const failing: Metrics = { ...metrics, scrape: () => Promise.reject(new Error('the primary did not send the merged metrics in time')) };
    const url = await serve(failing);
    const res = await request(`${url}/metrics`);
    expect(res.statusCode).toBe(503);
    const body = (await res.body.json()) as { status: string; detail: string };
    expect(body.status).toBe('metrics unavailable');
    expect(body.detail).toContain('merged metrics');
  });
});
