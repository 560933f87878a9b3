/**
 * Readiness of an issuer whose first key set holds no usable key: it counts as a failed fetch
 * (not ready, 503 GH_ERR_AUTH_KEYS_UNAVAILABLE, the reasons logged), not as a key set of 0 keys
 * that answers 401. The keys come from a real JWKS endpoint on loopback.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createJwtVerifier, type JwtVerifier } from '../../src/authn/jwt.js';
import type { GatewayServices } from '../../src/pipeline/runtime.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { issuerConfig, jwks, mint, T0, testKey } from './jwt-fixtures.js';

const rs = testKey('RS256');
const weak = testKey('RS256', 'weak', { bits: 1024 });

let server: JwksServer;
let verifier: JwtVerifier | undefined;

beforeEach(async () => {
  server = await startJwksServer(null);
});

afterEach(async () => {
  await verifier?.close();
  verifier = undefined;
  await server.close();
});

/** Services with a clock the test moves, and the log lines as objects. */
function services(): GatewayServices & { clock: { now: number }; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const clock = { now: T0 };
  return { log: pino({ level: 'info' }, sink), metrics: createMetrics(), now: () => clock.now, clock, lines };
}

function start(document: unknown, algorithms?: string[]) {
  server.document = document;
  const svc = services();
  const issuer = issuerConfig({ jwksUri: server.url, jwksCooldown: 30_000, ...(algorithms ? { algorithms } : {}) });
  verifier = createJwtVerifier(issuer, svc, { cache: null });
  return { verifier, svc, issuer };
}

describe('JWKS readiness: a first key set with no usable key', () => {
  const unusable: [string, unknown, RegExp, string[]?][] = [
    ['a key published for encryption (use "enc")', { keys: [{ ...rs.jwk, use: 'enc' }] }, /use/],
    ['an RSA key of 1024 bits', jwks(weak), /1024 bits/],
    ['a key whose alg the issuer does not accept', jwks(rs), /RS256/, ['ES256']],
    ['an empty key set', { keys: [] }, /no usable key/],
  ];

  it.each(unusable)('is not ready and answers 503 GH_ERR_AUTH_KEYS_UNAVAILABLE for %s', async (_what, document, reason, algorithms) => {
    const { verifier: v, svc } = start(document, algorithms);
    await v.start();
    const readiness = v.readiness();
    expect(readiness.ready).toBe(false);
    expect(readiness.details).toMatchObject({ keys: 0, lastError: expect.stringMatching(/no usable key/) });
    expect(String(readiness.details?.lastError)).toMatch(reason);
    expect(v.keys.current()).toBeNull();

    const result = await v.verify(mint(algorithms ? testKey('ES256') : rs, T0));
    expect(result.ok ? 'ok' : result.error.code).toBe('GH_ERR_AUTH_KEYS_UNAVAILABLE');
    expect(result.ok ? 0 : result.error.status).toBe(503);

    // Logged as a failed fetch, with why each key was refused.
    const failed = svc.lines.find((l) => typeof l.err === 'string' && (l.err as string).includes('no usable key'));
    expect(failed).toMatchObject({ level: 50 });
    expect(String(failed!.err)).toMatch(reason);
  });

  it('becomes ready once the endpoint serves a good key (a token after the cooldown refetches)', async () => {
    const { verifier: v, svc, issuer } = start({ keys: [{ ...rs.jwk, use: 'enc' }] });
    await v.start();
    expect(v.readiness().ready).toBe(false);
    const token = mint(rs, T0);
    // First token: one on-demand refetch, still the unusable set.
    expect(((await v.verify(token)) as { ok: false; error: { code: string } }).error.code).toBe('GH_ERR_AUTH_KEYS_UNAVAILABLE');
    const hits = server.hits;
    // Within the cooldown a token does not refetch.
    expect(((await v.verify(token)) as { ok: false; error: { code: string } }).error.code).toBe('GH_ERR_AUTH_KEYS_UNAVAILABLE');
    expect(server.hits).toBe(hits);

    server.document = jwks(rs);
    svc.clock.now += issuer.jwksCooldown;
    const result = await v.verify(token);
    expect(result.ok).toBe(true);
    expect(v.readiness()).toMatchObject({ ready: true, details: { keys: 1, kids: [rs.kid] } });
    expect(v.readiness().details?.lastError).toBeUndefined();
  });

  it('becomes ready on the retry schedule once the endpoint serves a good key, with no token needed', async () => {
    const { verifier: v } = start(jwks(weak));
    await v.start();
    expect(v.readiness().ready).toBe(false);
    server.document = jwks(weak, rs);
    // Retries after a failure back off from 0.5 s.
    await vi.waitFor(() => expect(v.readiness().ready).toBe(true), { timeout: 5_000, interval: 50 });
    expect(v.readiness().details).toMatchObject({ keys: 1, kids: [rs.kid], keysNotUsed: 1 });
    expect((await v.verify(mint(rs, T0))).ok).toBe(true);
  });
});
