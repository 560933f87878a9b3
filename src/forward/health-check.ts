import type { HealthCheckConfig } from '../config/types.js';
import type { Upstream, UpstreamTarget } from './upstream.js';

/** The running probes of one upstream. */
export interface HealthChecks {
  stop(): void;
}

/** What a probe may read of an answer's body before it lets the rest go. */
const MAX_PROBE_BODY = 64 * 1024;

/**
 * `upstreams[].healthCheck`: a `GET` of `path` on each target's origin, through the target's own
 * connection pool (its TLS settings and certificate checks), at once and then `interval` after
 * each probe ends (probes of one target never overlap). A 2xx or 3xx answer head within
 * `timeout` passes; anything else — another status, a refused or reset connection, a TLS
 * failure, no answer in time — fails. `unhealthyAfter` failures in a row take the target out of
 * the rotation until `healthyAfter` passes in a row bring it back (upstream.setFailing).
 *
 * @example
 * ```ts
 * const checks = startHealthChecks(upstream, { path: '/healthz', interval: 10_000, timeout: 2_000, unhealthyAfter: 2, healthyAfter: 2 });
 * checks.stop();
 * ```
 */
export function startHealthChecks(upstream: Upstream, config: HealthCheckConfig): HealthChecks {
  const probes = upstream.targets.map((target) => new TargetProbe(upstream, target, config));
  for (const probe of probes) probe.run();
  return {
    stop() {
      for (const probe of probes) probe.stop();
    },
  };
}

class TargetProbe {
  private passes = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly upstream: Upstream,
    private readonly target: UpstreamTarget,
    private readonly config: HealthCheckConfig,
  ) {}

  run(): void {
    this.timer = null;
    void this.probe().then((failure) => {
      if (this.stopped) return;
      this.record(failure);
      this.timer = setTimeout(() => this.run(), this.config.interval);
      // Probes never hold the process open (shutdown closes the upstream, which stops them).
      this.timer.unref();
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.abort.abort();
  }

  /** A probe's status passes: one of `expectStatus` (a code, or a range such as `2XX`), by default 2XX and 3XX. */
  private passing(status: number): boolean {
    const expected = this.config.expectStatus;
    if (expected === undefined) return status >= 200 && status < 400;
    const range = `${Math.floor(status / 100)}XX`;
    return expected.some((e) => e === status || e === range);
  }

  /** Null when the probe passed, else what went wrong. Never rejects. */
  private async probe(): Promise<string | null> {
    const timeout = this.config.timeout;
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeout)]);
    try {
      const answer = await this.target.pool.request({
        method: this.config.method ?? 'GET',
        path: this.config.path,
        headers: { 'user-agent': 'gatehouse-health-check', accept: '*/*' },
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal,
      });
      // The body is not looked at: read a little of it (the connection can then be reused) and let the rest go.
      await answer.body.dump({ limit: MAX_PROBE_BODY }).catch(() => undefined);
      const status = answer.statusCode;
      return this.passing(status) ? null : `status ${status}${this.config.expectStatus === undefined ? '' : ` (expected ${this.config.expectStatus.join(', ')})`}`;
    } catch (err) {
      if (signal.aborted && !this.abort.signal.aborted) return `no answer within ${timeout} ms`;
      const code = (err as { code?: string }).code;
      return `${(err as Error).name}: ${(err as Error).message}${code ? ` (${code})` : ''}`;
    }
  }

  private record(failure: string | null): void {
    if (failure === null) {
      this.failures = 0;
      this.passes++;
      if (this.target.failing && this.passes >= this.config.healthyAfter) this.upstream.setFailing(this.target, false, 'passed');
    } else {
      this.passes = 0;
      this.failures++;
      if (!this.target.failing && this.failures >= this.config.unhealthyAfter) this.upstream.setFailing(this.target, true, failure);
    }
  }
}
