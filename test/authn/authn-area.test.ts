import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthnArea, useOpaqueAuthenticator } from '../../src/authn/index.js';
import { loadConfigText } from '../../src/config/load.js';
import type { GatehouseConfig } from '../../src/config/types.js';
import type { RequestContext, Stage } from '../../src/pipeline/context.js';
import type { AreaRuntime } from '../../src/pipeline/runtime.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { jwks, mint, testKey, testServices } from './jwt-fixtures.js';

/** The authn area on its own: issuer choice by iss, per-route issuers, cache reuse across reloads. */
const a = testKey('ES256', 'a-1');
const b = testKey('ES256', 'b-1');
let keysA: JwksServer;
let keysB: JwksServer;
const open: AreaRuntime[] = [];

beforeAll(async () => {
  keysA = await startJwksServer(jwks(a));
  keysB = await startJwksServer(jwks(b));
});
afterAll(async () => {
  await Promise.all(open.map((x) => x.close?.()));
  await keysA.close();
  await keysB.close();
});

function config(audience = 'https://api.example.test'): GatehouseConfig {
  return loadConfigText(`
listen: { port: 0 }
issuers:
  - { name: a, issuer: https://a.example.test, jwksUri: ${keysA.url}, audiences: [${audience}] }
  - { name: b, issuer: https://b.example.test, jwksUri: ${keysB.url}, audiences: [${audience}] }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - { name: any, path: /any, upstream: api }
  - { name: only-b, path: /b, upstream: api, issuers: [b] }
`);
}

async function area(c: GatehouseConfig): Promise<{ runtime: AreaRuntime; stage: (i: number) => Stage }> {
  const runtime = await createAuthnArea(c, testServices({ now: Date.now() }));
  open.push(runtime);
  await runtime.start?.();
  return { runtime, stage: (i) => runtime.stagesFor!(c.routes[i]!, i).authenticate! };
}

async function run(stage: Stage, token: string | null): Promise<{ code: string; ctx: RequestContext }> {
  const ctx = { token, principal: null, headers: {}, query: '', params: {} } as unknown as RequestContext;
  const denial = await stage(ctx);
  return { code: denial ? denial.code : 'ok', ctx };
}

const tokenOf = (key: typeof a, iss: string) => mint(key, Date.now(), { iss });

describe('authn area', () => {
  it('validates a token with the issuer its iss names, each with its own keys', async () => {
    const { stage } = await area(config());
    expect((await run(stage(0), tokenOf(a, 'https://a.example.test'))).code).toBe('ok');
    expect((await run(stage(0), tokenOf(b, 'https://b.example.test'))).code).toBe('ok');
  });

  it("never verifies a token with another issuer's keys", async () => {
    const { stage } = await area(config());
    // signed by b's key but claiming a's iss: a's key set does not have kid b-1
    expect((await run(stage(0), tokenOf(b, 'https://a.example.test'))).code).toBe('GH_ERR_JWT_KID_UNKNOWN');
  });

  it('refuses an issuer the route does not name, even from the cache', async () => {
    const { stage } = await area(config());
    const token = tokenOf(a, 'https://a.example.test');
    expect((await run(stage(0), token)).code).toBe('ok'); // now cached
    expect((await run(stage(1), token)).code).toBe('GH_ERR_JWT_ISSUER_NOT_ACCEPTED');
  });

  it('answers 401 without an error when no token was found', async () => {
    const { stage } = await area(config());
    const { code } = await run(stage(0), null);
    expect(code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
  });

  it('reports readiness per issuer', async () => {
    const { runtime } = await area(config());
    const r = runtime.readiness!();
    expect(r.ready).toBe(true);
    expect(r.details).toMatchObject({ issuers: { a: { keys: 1 }, b: { keys: 1 } } });
  });

  it('reuses the running cache on a reload with the same issuers, and starts fresh when they change', async () => {
    const token = tokenOf(a, 'https://a.example.test');
    const first = await area(config());
    const p1 = (await run(first.stage(0), token)).ctx.principal;
    const reloaded = await area(config());
    expect((await run(reloaded.stage(0), token)).ctx.principal).toBe(p1); // the same cached principal
    await first.runtime.close?.();
    expect((await run(reloaded.stage(0), token)).ctx.principal).toBe(p1);
    const changed = await area(config('https://api.example.test, https://more.example.test'));
    const p3 = (await run(changed.stage(0), token)).ctx.principal;
    expect(p3).not.toBe(p1);
    expect(p3).toEqual(p1);
  });
});

describe('the opaque-token authenticator', () => {
  const withOpaque = (): GatehouseConfig =>
    loadConfigText(`
listen: { port: 0 }
issuers:
  - { name: a, issuer: https://a.example.test, jwksUri: ${keysA.url}, audiences: [https://api.example.test] }
  - name: opaque
    issuer: https://opaque.example.test
    audiences: [https://api.example.test]
    introspection: { endpoint: 'http://127.0.0.1:1/introspect', clientId: gateway, clientSecret: s3cret }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - { name: any, path: /any, upstream: api }
`);

  it('refuses an introspected issuer when the build has no opaque-token authenticator, and the built-in comes back with undefined', async () => {
    useOpaqueAuthenticator(null);
    try {
      const refused = await createAuthnArea(withOpaque(), testServices({ now: Date.now() }));
      open.push(refused);
      expect(refused.issues).toEqual([expect.objectContaining({ path: 'issuers[1].introspection', message: expect.stringMatching(/not supported by this build/) })]);
    } finally {
      useOpaqueAuthenticator(undefined);
    }
    const built = await createAuthnArea(withOpaque(), testServices({ now: Date.now() }));
    open.push(built);
    expect(built.issues).toEqual([]);
  });

  it('without an introspected issuer, refuses an opaque token as a malformed JWT (no authenticator tries it)', async () => {
    const { stage } = await area(config());
    expect((await run(stage(0), 'an-opaque-reference-token')).code).toBe('GH_ERR_JWT_MALFORMED');
  });
});
