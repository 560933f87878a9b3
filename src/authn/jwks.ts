import type { Logger } from 'pino';
import type { IssuerConfig } from '../config/types.js';
import type { GatewayServices, Readiness } from '../pipeline/runtime.js';
import { fetchDiscovery } from './discovery.js';
import type { JsonFetcher } from './fetch.js';
import { importKeySet, retireKeys, type KeySet } from './keys.js';

/**
 * An issuer's key set, kept fresh: fetched at start, refreshed on a schedule, refetched when a
 * token names an unknown `kid` at most once per `jwksCooldown` (single in-flight fetch), and
 * kept as the last good set when the endpoint is down.
 *
 * @example
 * ```ts
 * const source = createJwksSource({ issuer, services, fetcher });
 * await source.start();
 * const keys = source.current(); // null until a key set has been fetched once
 * ```
 */
export interface JwksSource {
  /** The last good key set, or null when none was ever fetched. Hot path: a field read. */
  current(): KeySet | null;
  /**
   * Refetch now unless a fetch happened within the cooldown; waits for the fetch in flight.
   * Resolves to whether a new key set was installed by this call or the one it joined.
   */
  refreshIfAllowed(): Promise<boolean>;
  /** Refetch now, joining a fetch in flight; ignores the cooldown (schedule, tests). */
  refresh(): Promise<boolean>;
  start(): Promise<void>;
  close(): Promise<void>;
  readiness(): Readiness;
}

/**
 * What {@link createJwksSource} needs.
 *
 * @example
 * ```ts
 * const options: JwksSourceOptions = { issuer, services, load: async () => ({ keys: [jwk] }) };
 * ```
 */
export interface JwksSourceOptions {
  issuer: IssuerConfig;
  services: GatewayServices;
  /** Needed unless `load` is given. */
  fetcher?: JsonFetcher;
  /** Where the JWK Set document comes from; default: the issuer's jwksUri, or discovery. */
  load?: () => Promise<unknown>;
  /** Called after a new key set is installed (e.g. to drop cached tokens). */
  onUpdate?: (keys: KeySet) => void;
}

/** Retry delay after a failed fetch while no key set is held: starts here, doubles up to jwksRefresh. */
const FIRST_RETRY_MS = 500;

/**
 * Live sources by what they fetch. A reload builds new sources while the old plan still runs;
 * a new source starts from the key set of a live one with the same settings, so a reload while
 * the JWKS endpoint is down keeps validating instead of answering 503.
 */
const live = new Map<string, Set<{ keys(): KeySet | null; fetchedAt(): number }>>();

function sourceKey(issuer: IssuerConfig): string {
  return JSON.stringify([issuer.name, issuer.issuer, issuer.jwksUri ?? null, issuer.discovery, issuer.algorithms, issuer.tls ?? null]);
}

/**
 * Build the key source of one issuer. Never throws for a dead endpoint; `readiness()` says so.
 *
 * @example
 * ```ts
 * const source = createJwksSource({ issuer, services, fetcher: createFetcher(issuer.tls, baseDir) });
 * await source.start();
 * ```
 */
export function createJwksSource(options: JwksSourceOptions): JwksSource {
  const { issuer, services } = options;
  const log: Logger = services.log.child({ area: 'authn', issuer: issuer.name });
  const fetches = services.metrics.counter('gatehouse_jwks_fetch_total', 'JWKS fetches by issuer and result.', ['issuer', 'result']);
  const keyGauge = services.metrics.gauge('gatehouse_jwks_keys', 'Usable keys in the key set, by issuer.', ['issuer'], 'min');
  let discoveredJwksUri: string | undefined;

  const load =
    options.load ??
    (async () => {
      const fetcher = options.fetcher;
      if (!fetcher) throw new Error('no fetcher');
      let uri = issuer.jwksUri ?? discoveredJwksUri;
      if (uri === undefined) {
        const meta = await fetchDiscovery(issuer, fetcher);
        if (!meta.jwks_uri) throw new Error(`the discovery document of ${issuer.issuer} has no jwks_uri`);
        uri = discoveredJwksUri = meta.jwks_uri;
      }
      try {
        return await fetcher.getJson(uri, { timeout: issuer.fetchTimeout, maxResponseSize: issuer.maxResponseSize });
      } catch (err) {
        // The provider may have moved its keys: discover again next time.
        discoveredJwksUri = undefined;
        throw err;
      }
    });

  let keys: KeySet | null = null;
  let fetchedAt = 0;
  const liveKey = options.load ? null : sourceKey(issuer);
  const self = { keys: () => keys, fetchedAt: () => fetchedAt };
  if (liveKey !== null) {
    let peers = live.get(liveKey);
    for (const peer of peers ?? []) {
      const set = peer.keys();
      if (set !== null && peer.fetchedAt() >= fetchedAt) {
        keys = set;
        fetchedAt = peer.fetchedAt();
      }
    }
    if (!peers) live.set(liveKey, (peers = new Set()));
    peers.add(self);
  }
  /** Last refetch asked for by a token (unknown kid, no keys yet): the cooldown counts from here. */
  let lastOnDemandAt = -Infinity;
  let lastError: string | undefined;
  let failuresInRow = 0;
  let inflight: Promise<boolean> | null = null;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  function schedule(): void {
    if (closed) return;
    if (timer) clearTimeout(timer);
    const base =
      failuresInRow === 0 ? issuer.jwksRefresh : Math.min(issuer.jwksRefresh, FIRST_RETRY_MS * 2 ** Math.min(failuresInRow - 1, 16));
    // ±10% jitter: several workers or gateways do not refetch in lockstep.
    const delay = Math.max(1, Math.round(base * (0.9 + Math.random() * 0.2)));
    timer = setTimeout(() => void refresh(), delay);
    timer.unref();
  }

  async function fetchOnce(): Promise<boolean> {
    try {
      const document = await load();
      const next = importKeySet(document, issuer.algorithms, keys);
      if (closed) return false;
      // A set with no usable key is a failed fetch, first one included: installed, it would
      // make the gateway ready with 0 keys and answer 401 instead of 503 KEYS_UNAVAILABLE.
      if (next.keys.length === 0) {
        const why = next.rejected.map((r) => `${r.kid ?? '(no kid)'}: ${r.reason}`).join('; ');
        throw new Error(`the key set has no usable key${why ? ` (${why})` : ''}${keys !== null ? '; keeping the last good one' : ''}`);
      }
      const known = new Set(keys?.rejected.map((r) => `${r.kid}|${r.reason}`));
      for (const r of next.rejected) {
        if (!known.has(`${r.kid}|${r.reason}`)) log.warn({ kid: r.kid, reason: r.reason }, 'a key of the issuer key set is not used');
      }
      const hadKeys = keys !== null;
      const { added, removed } = retireKeys(keys, next);
      keys = next;
      fetchedAt = services.now();
      if (!hadKeys) log.info({ keys: next.keys.length, kids: added }, 'JWKS fetched');
      else if (added.length > 0 || removed.length > 0) log.info({ keys: next.keys.length, added, removed }, 'JWKS changed (key rotation)');
      else if (failuresInRow > 0) log.info({ keys: next.keys.length }, 'JWKS fetched again after failures');
      lastError = undefined;
      failuresInRow = 0;
      fetches.inc({ issuer: issuer.name, result: 'ok' });
      keyGauge.set({ issuer: issuer.name }, next.keys.length);
      options.onUpdate?.(next);
      return true;
    } catch (err) {
      failuresInRow++;
      lastError = err instanceof Error ? err.message : String(err);
      fetches.inc({ issuer: issuer.name, result: 'error' });
      if (keys) log.warn({ err: lastError, keysAgeMs: services.now() - fetchedAt }, 'JWKS refresh failed; validating with the last good key set');
      else log.error({ err: lastError }, 'JWKS fetch failed and no key set is held: protected routes answer 503');
      return false;
    }
  }

  function refresh(): Promise<boolean> {
    if (closed) return Promise.resolve(false);
    if (inflight) return inflight;
    inflight = fetchOnce().finally(() => {
      inflight = null;
      schedule();
    });
    return inflight;
  }

  return {
    current: () => keys,
    refresh,
    refreshIfAllowed() {
      if (inflight) return inflight;
      const now = services.now();
      // Scheduled refreshes do not count: a key published just after one is picked up at once.
      if (now - lastOnDemandAt < issuer.jwksCooldown) return Promise.resolve(false);
      lastOnDemandAt = now;
      return refresh();
    },
    async start() {
      await refresh();
    },
    async close() {
      closed = true;
      if (liveKey !== null) {
        const peers = live.get(liveKey);
        peers?.delete(self);
        if (peers?.size === 0) live.delete(liveKey);
      }
      if (timer) clearTimeout(timer);
      await inflight?.catch(() => undefined);
    },
    readiness() {
      const now = services.now();
      const details: Record<string, unknown> = keys
        ? {
            keys: keys.keys.length,
            kids: keys.keys.map((k) => k.kid ?? '(no kid)'),
            keysAgeSeconds: Math.round((now - fetchedAt) / 1000),
            ...(keys.rejected.length > 0 ? { keysNotUsed: keys.rejected.length } : {}),
          }
        : { keys: 0, status: 'no key set fetched yet' };
      if (lastError !== undefined) {
        details.lastError = lastError;
        if (keys) details.status = 'the last refresh failed; using the last good key set';
      }
      return { ready: keys !== null, details };
    },
  };
}
