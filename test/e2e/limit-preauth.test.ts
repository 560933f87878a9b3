import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// Count every signature verification the gateway performs (src/authn/keys.ts uses node:crypto verify).
const verifications = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  const verify = ((...args: Parameters<typeof original.verify>) => {
    verifications.count++;
    return (original.verify as (...a: unknown[]) => unknown)(...args);
  }) as typeof original.verify;
  return { ...original, default: { ...original, verify }, verify };
});

const { startTestGateway } = await import('../helpers/gateway.js');
const { DEMO_CLIENT_SECRETS, startAuthorizationServer } = await import('../helpers/issuer.js');
const { startUpstream } = await import('../helpers/upstream.js');

let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: Awaited<ReturnType<typeof startUpstream>>;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let token: string;

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [{ name: api, url: ${api.url} }]
preAuthLimit: { limit: 5, window: 1m }
tokenCache: { enabled: false }
routes:
  - { name: orders, path: /orders, upstream: api }
`);
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

/** A token that looks right (known iss and kid) but whose signature is wrong: verifying it costs a signature check. */
function forged(i: number): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  // Change six characters in the middle (the tail stays canonical base64url): a new, wrong signature.
  const mark = String(i).padStart(6, '0').replace(/\d/g, (d) => 'QRSTUVWXYZ'[Number(d)]!);
  return `${header}.${payload}.${signature.slice(0, 20)}${mark}${signature.slice(26)}`;
}

describe('pre-auth limit', () => {
  it('a flood of forged tokens from one IP is refused before any signature verification', async () => {
    // Warm up: the key set is fetched and one real token verifies.
    const ok = await request(`${gw.url}/orders`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
    expect(verifications.count).toBeGreaterThan(0);

    const before = verifications.count;
    const statuses: number[] = [];
    const codes: string[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await request(`${gw.url}/orders`, { headers: { authorization: `Bearer ${forged(i)}` } });
      statuses.push(res.statusCode);
      codes.push(((await res.body.json()) as { code: string }).code);
      if (res.statusCode === 429) {
        // T = 60 s / 5 = 12 s, minus the time since the warm-up request.
        const retryAfter = Number(res.headers['retry-after']);
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(12);
        expect(res.headers.ratelimit).toBe(`"pre-auth";r=0;t=${retryAfter}`);
      }
    }
    // Burst of 5 per minute, one used by the warm-up: 4 forged tokens are checked (401), 46 never reach the crypto.
    expect(statuses.filter((s) => s === 401)).toHaveLength(4);
    expect(codes.filter((c) => c === 'GH_ERR_JWT_SIGNATURE_INVALID')).toHaveLength(4);
    expect(codes.filter((c) => c === 'GH_ERR_LIMIT_RATE_EXCEEDED')).toHaveLength(46);
    expect(verifications.count - before).toBe(4);
    expect(api.requests).toHaveLength(1);
  });

  it('garbage that is not even a JWT is refused by the same limit', async () => {
    const res = await request(`${gw.url}/orders`, { headers: { authorization: 'Bearer not-a-jwt' } });
    expect(res.statusCode).toBe(429);
    await res.body.dump();
  });
});

describe('pre-auth limit and the client address', () => {
  const config = (trusted: string) => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams: [{ name: api, url: ${api.url} }]
trustedProxies: [${trusted}]
preAuthLimit: { limit: 2, window: 1m }
routes:
  - { name: orders, path: /orders, upstream: api }
`;

  it('an untrusted peer cannot dodge the limit by rotating X-Forwarded-For', async () => {
    const gw2 = await startTestGateway(config('192.0.2.1'));
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await request(`${gw2.url}/orders`, { headers: { authorization: 'Bearer garbage', 'x-forwarded-for': `198.51.100.${i}` } });
        statuses.push(res.statusCode);
        await res.body.dump();
      }
      expect(statuses).toEqual([401, 401, 429, 429, 429, 429]);
    } finally {
      await gw2.close();
    }
  });

  it('behind a trusted proxy each client address has its own budget', async () => {
    const gw2 = await startTestGateway(config('127.0.0.1'));
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await request(`${gw2.url}/orders`, { headers: { authorization: 'Bearer garbage', 'x-forwarded-for': `198.51.100.${i % 3}` } });
        statuses.push(res.statusCode);
        await res.body.dump();
      }
      expect(statuses).toEqual([401, 401, 401, 401, 401, 401]);
      const third = await request(`${gw2.url}/orders`, { headers: { authorization: 'Bearer garbage', 'x-forwarded-for': '198.51.100.0' } });
      expect(third.statusCode).toBe(429);
      await third.body.dump();
    } finally {
      await gw2.close();
    }
  });
});
