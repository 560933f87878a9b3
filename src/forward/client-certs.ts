import type { Gauge } from 'prom-client';
import type { GatewayServices } from '../pipeline/runtime.js';
import { EXPIRY_WARNING_DAYS } from '../server/tls.js';
import type { ClientCertificate } from './outbound.js';

const DAY = 86_400_000;

/** Per gauge (one per gateway's registry): which plan last set each series, so an old plan's close leaves a new one's alone. */
const owners = new WeakMap<Gauge<string>, Map<string, object>>();

/**
 * Report the client certificates a plan's outbound clients present (mutual TLS to upstreams and
 * issuers): `gatehouse_tls_client_certificate_not_after_seconds{client,certificate}`, to alert on
 * before the upstream starts refusing the handshake, and a `warn` when one has fewer than
 * {@link EXPIRY_WARNING_DAYS} days left — at start and at each reload, as the listeners' own.
 * Returns what to call when the plan closes (its series go, unless a newer plan set them).
 *
 * @example
 * ```ts
 * const forget = reportClientCertificates(readClientTls(config).certificates, services, plan);
 * ```
 */
export function reportClientCertificates(certificates: readonly ClientCertificate[], services: GatewayServices, owner: object, now = Date.now()): () => void {
  if (certificates.length === 0) return () => undefined;
  const gauge = services.metrics.gauge(
    'gatehouse_tls_client_certificate_not_after_seconds',
    'Expiry (Unix time) of each client certificate gatehouse presents to an upstream or an issuer (mutual TLS).',
    ['client', 'certificate'],
    'min',
  );
  let byKey = owners.get(gauge);
  if (byKey === undefined) owners.set(gauge, (byKey = new Map()));
  for (const c of certificates) {
    gauge.set({ client: c.client, certificate: c.file }, Math.floor(c.notAfter / 1000));
    byKey.set(`${c.client}\u0000${c.file}`, owner);
    const days = Math.floor((c.notAfter - now) / DAY);
    if (days < EXPIRY_WARNING_DAYS) {
      services.log.warn({ client: c.client, certificate: c.file, subject: c.subject, serial: c.serialNumber, notAfter: new Date(c.notAfter).toISOString(), days }, 'client certificate expires soon');
    }
  }
  return () => {
    for (const c of certificates) {
      const key = `${c.client}\u0000${c.file}`;
      if (byKey.get(key) !== owner) continue;
      byKey.delete(key);
      gauge.remove({ client: c.client, certificate: c.file });
    }
  };
}
