import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigIssue } from '../errors.js';
import type { AreaFactory, AreaRuntime } from '../pipeline/runtime.js';
import { acquireGatewayKeys } from './gateway-keys.js';

/**
 * Where the public keys of the gateway's own JWTs are published (admin listener).
 *
 * @example
 * ```ts
 * const jwks = createRemoteJWKSet(new URL(GATEWAY_JWKS_PATH, gateway.adminUrl!));
 * ```
 */
export const GATEWAY_JWKS_PATH = '/.well-known/jwks.json';

/** How often generated keys are re-read (rotations by other processes) and checked for age. */
const KEY_CHECK_MS = 60_000;
/**
 * A key rotated in automatically is published this long before it signs: every process re-reads
 * the directory (KEY_CHECK_MS) and every upstream refreshes its cached JWKS (max-age 60 s) first.
 */
const ACTIVATION_DELAY_MS = 3 * KEY_CHECK_MS;

/**
 * The phantom-token area: loads (or generates and persists) the gateway signing keys and
 * publishes their public halves at `/.well-known/jwks.json` on the admin listener, so upstreams
 * can verify the JWTs gatehouse mints for opaque tokens. Present only when some issuer mints
 * (introspection with `accept: application/json` or `application/token-introspection+jwt`).
 *
 * The key set is sent with `cache-control: max-age=60`. Generated keys are re-read every minute
 * (rotations by other processes) and, with `gateway.keyRotationInterval`, rotated when old: the
 * new key is published 3 minutes before it signs; the old one stays for `keyRotationGrace`.
 *
 * @example
 * ```ts
 * const area = await createPhantomArea(config, services);
 * await area.handleAdmin?.(req, res); // GET /.well-known/jwks.json → { keys: [...] }
 * ```
 */
export const createPhantomArea: AreaFactory = async (config, services): Promise<AreaRuntime> => {
  const minting = config.issuers.some((i) => i.introspection && i.introspection.accept !== 'application/jwt');
  if (!minting) return { name: 'phantom' };
  const keys = acquireGatewayKeys(config, services.now);
  const issues: ConfigIssue[] = [];
  const generated = config.gateway.signingKeys.length === 0;
  // Configured keys are checked at compile time (a bad file is a config error, and a reload with
  // one is refused); generated keys are made in start(), so `gatehouse validate` writes nothing.
  if (!generated) {
    try {
      await keys.ready();
    } catch (err) {
      issues.push({ file: config.file, line: 0, column: 0, path: 'gateway.signingKeys', message: (err as Error).message });
    }
  }
  if (!config.admin) {
    services.log.warn('no admin listener: the gateway JWKS (/.well-known/jwks.json) is not published, so upstreams need the public keys another way');
  }
  if (config.gateway.keyRotationGrace < config.gateway.tokenTtl) {
    services.log.warn(
      { keyRotationGrace: config.gateway.keyRotationGrace, tokenTtl: config.gateway.tokenTtl },
      'gateway.keyRotationGrace is shorter than gateway.tokenTtl: JWTs minted just before a rotation stop verifying before they expire',
    );
  }
  let released = false;
  let timer: NodeJS.Timeout | undefined;
  function check(): void {
    keys
      .refresh({ interval: config.gateway.keyRotationInterval, activateAfter: ACTIVATION_DELAY_MS })
      .then((key) => {
        if (key) services.log.info({ kid: key.kid, activatesAt: new Date(key.activatesAt).toISOString() }, 'gateway signing key rotated');
      })
      .catch((err: Error) => services.log.warn({ err: err.message }, 'gateway keys: refresh failed; keeping the keys in hand'));
  }
  return {
    name: 'phantom',
    issues,
    handleAdmin(req: IncomingMessage, res: ServerResponse): boolean {
      const url = req.url ?? '/';
      const end = url.indexOf('?');
      if ((end === -1 ? url : url.slice(0, end)) !== GATEWAY_JWKS_PATH) return false;
      const body = keys.jwksJson(services.now());
      res.writeHead(200, {
        'content-type': 'application/jwk-set+json',
        'cache-control': 'public, max-age=60',
        'content-length': Buffer.byteLength(body),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    },
    async start() {
      if (!generated || issues.length > 0) return;
      try {
        await keys.ready();
      } catch (err) {
        // Readiness stays false and minting answers 500 until the directory is usable.
        services.log.error({ err: (err as Error).message }, 'gateway keys: cannot load or generate the signing key');
        return;
      }
      check();
      timer = setInterval(check, KEY_CHECK_MS);
      timer.unref();
    },
    readiness() {
      return keys.loaded ? { ready: true } : { ready: false, details: { gatewayKeys: 'not loaded' } };
    },
    async close() {
      if (released) return;
      released = true;
      if (timer) clearInterval(timer);
      keys.release();
    },
  };
};
