import { isLoopbackHost, isSecureOrLoopbackUrl } from './normalize.js';
import type { GatehouseConfig } from './types.js';

/**
 * A setting that is allowed but weakens what gatehouse protects: said at `start` and on each
 * reload (a `warn` line with `message` and `fields`), and by `gatehouse validate` with the file,
 * line and key of `path` (`--strict` turns them into problems).
 */
export interface Advice {
  /** Where in the config: the key it is about. */
  readonly path: readonly (string | number)[];
  /** What it risks and what to do instead: the log line's message (stable, for alerts). */
  readonly message: string;
  /** The log line's fields. */
  readonly fields: Readonly<Record<string, unknown>>;
}

const UNSAFE_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * What in a config that loads is still worth a warning:
 * - a plain HTTP listener off loopback with no HTTPS listener beside it and no `allowPlaintext`;
 * - an `http://` upstream target off loopback (requests and the tokens they carry in clear);
 * - an admin listener off loopback without `admin.allowFrom` (`/metrics` answers anyone);
 * - `gateway.methodOverride: allow` (an upstream that honours overrides runs another method);
 * - a public route that lists a method that writes, with no rate limit, quota or `preAuthLimit`.
 *
 * @example
 * ```ts
 * for (const a of configAdvice(config)) log.warn(a.fields, a.message);
 * ```
 */
export function configAdvice(config: GatehouseConfig): Advice[] {
  const out: Advice[] = [];
  const anyTls = config.listen.some((l) => l.tls);
  config.listen.forEach((l, i) => {
    if (l.tls || l.allowPlaintext || anyTls || isLoopbackHost(l.host)) return;
    out.push({
      path: ['listen', i, 'host'],
      message: 'plain HTTP listener on a non-loopback address: configure tls, or allowPlaintext behind a TLS-terminating proxy',
      fields: { listener: l.name },
    });
  });
  config.upstreams.forEach((u, i) => {
    const plain = u.targets.filter((target) => !isSecureOrLoopbackUrl(target));
    if (plain.length === 0) return;
    const first = u.targets.indexOf(plain[0]!);
    out.push({
      path: u.configuredAs === 'targets' ? ['upstreams', i, 'targets', first] : ['upstreams', i, 'url'],
      message: 'plain HTTP upstream on a non-loopback address: requests and the tokens they carry cross the network unencrypted; use an https:// url (upstreams[].tls for a private CA)',
      fields: { upstream: u.name, url: plain[0], ...(u.targets.length > 1 ? { targets: plain } : {}) },
    });
  });
  const admin = config.admin;
  if (admin && !isLoopbackHost(admin.host) && !admin.allowFrom) {
    out.push({
      path: ['admin', 'host'],
      message: 'admin listener on a non-loopback address without admin.allowFrom: /metrics and /readyz answer anyone who can reach it; list the monitoring addresses in admin.allowFrom',
      fields: { admin: `${admin.host}:${admin.port}` },
    });
  }
  if (config.gateway.methodOverride === 'allow') {
    out.push({
      path: ['gateway', 'methodOverride'],
      message: 'method overrides allowed: an upstream that honours X-HTTP-Method-Override or _method executes another method than the one gatehouse authorized; set gateway.methodOverride: refuse unless no upstream honours them',
      fields: { methodOverride: 'allow' },
    });
  }
  const limitedBeforeRouting = Boolean(config.preAuthLimit);
  config.routes.forEach((r, i) => {
    if (!r.public || limitedBeforeRouting || r.rateLimits.length > 0 || r.quotas.length > 0 || !r.methods) return;
    const writes = r.methods.filter((m) => UNSAFE_METHODS.includes(m));
    if (writes.length === 0) return;
    out.push({
      path: ['routes', i, 'methods'],
      message: 'public route that takes writes with no rate limit, quota or preAuthLimit: anyone can send as many as they like; give it rateLimits (per IP) or set preAuthLimit',
      fields: { route: r.name, methods: writes },
    });
  });
  return out;
}
