import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError, type GatehouseError } from '../../src/errors.js';
import { createLimitArea } from '../../src/limit/index.js';
import type { Principal, RequestContext, Stage } from '../../src/pipeline/context.js';
import type { AreaRuntime, GatewayServices } from '../../src/pipeline/runtime.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const BASE = `
listen: { port: 0 }
issuers:
  - { name: main, issuer: http://127.0.0.1:1/i, jwksUri: http://127.0.0.1:1/jwks, audiences: [api] }
upstreams: [{ name: up, url: http://127.0.0.1:1 }]
`;

function services(clock: { now: number }): GatewayServices {
  return { log: pino({ level: 'silent' }), metrics: createMetrics(), now: () => clock.now };
}

function ctx(over: { ip?: string; sub?: string; headers?: Record<string, string> } = {}): RequestContext {
  const principal: Principal | null = over.sub
    ? { issuer: 'main', subject: over.sub, claims: { sub: over.sub }, scopes: new Set(), kind: 'jwt', upstreamToken: 't', upstreamAuthorization: 'Bearer t' }
    : null;
  return { clientIp: over.ip ?? '192.0.2.1', headers: over.headers ?? {}, principal, responseHeaders: [], onFinish: [] } as unknown as RequestContext;
}

async function area(yaml: string, svc: GatewayServices): Promise<AreaRuntime> {
  const config = loadConfigText(BASE + yaml);
  const runtime = await createLimitArea(config, svc);
  expect(runtime.issues ?? []).toEqual([]);
  if (!config.redis) await runtime.start!();
  return runtime;
}

function stages(runtime: AreaRuntime, yaml: string, routeName: string) {
  const config = loadConfigText(BASE + yaml);
  const index = config.routes.findIndex((r) => r.name === routeName);
  return runtime.stagesFor!(config.routes[index]!, index);
}

const run = async (stage: Stage | null | undefined, c: RequestContext) => (stage ? await stage(c) : null);
const header = (c: RequestContext, name: string) => c.responseHeaders.find(([k]) => k === name)?.[1];

describe('limit area: rate limits', () => {
  const yaml = `
rateLimits:
  - { name: per-user, key: claim:sub, limit: 3, window: 1m }
  - { name: per-route, key: route, limit: 100, window: 1m, burst: 5 }
routes:
  - { name: orders, path: /orders, upstream: up, rateLimits: [per-user, per-route] }
  - { name: other, path: /other, upstream: up, rateLimits: [per-user] }
  - { name: open, path: /open, upstream: up, public: true }
`;

  it('admits the burst, then answers 429 with Retry-After and RateLimit headers', async () => {
    const clock = { now: 1_700_000_000_000 };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'orders');
    expect(limit).toBeTypeOf('function');
    for (let i = 0; i < 3; i++) {
      const c = ctx({ sub: 'alice' });
      expect(await run(limit, c)).toBeNull();
      expect(header(c, 'ratelimit-policy')).toBe('"per-user";q=3;w=60,"per-route";q=100;w=60');
      expect(header(c, 'ratelimit')).toBe(`"per-user";r=${2 - i};t=20,"per-route";r=${4 - i};t=1`);
    }
    const c = ctx({ sub: 'alice' });
    const denial = (await run(limit, c)) as GatehouseError;
    expect(denial.code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    expect(denial.status).toBe(429);
    expect(denial.headers?.['retry-after']).toBe('20');
    expect(header(c, 'ratelimit')).toBe('"per-user";r=0;t=20,"per-route";r=1;t=1');
    // Another user has a budget of their own; 20 s later alice has one more request.
    expect(await run(limit, ctx({ sub: 'bob' }))).toBeNull();
    clock.now += 20_000;
    expect(await run(limit, ctx({ sub: 'alice' }))).toBeNull();
    expect(((await run(limit, ctx({ sub: 'alice' }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
  });

  it('one policy named on two routes is one budget per key across them', async () => {
    const clock = { now: 1_700_000_000_000 };
    const runtime = await area(yaml, services(clock));
    const orders = stages(runtime, yaml, 'orders').limit;
    const other = stages(runtime, yaml, 'other').limit;
    expect(await run(orders, ctx({ sub: 'carol' }))).toBeNull();
    expect(await run(other, ctx({ sub: 'carol' }))).toBeNull();
    expect(await run(other, ctx({ sub: 'carol' }))).toBeNull();
    expect(((await run(orders, ctx({ sub: 'carol' }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
  });

  it('a request refused by one rate limit counts against none of the others', async () => {
    const clock = { now: 1_700_000_000_000 };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'orders');
    for (let i = 0; i < 3; i++) expect(await run(limit, ctx({ sub: 'erin' }))).toBeNull();
    // erin hammers: per-user refuses her, and the shared per-route budget (burst 5) stays untouched.
    for (let i = 0; i < 20; i++) expect(((await run(limit, ctx({ sub: 'erin' }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    const c = ctx({ sub: 'frank' });
    expect(await run(limit, c)).toBeNull();
    expect(header(c, 'ratelimit')).toBe('"per-user";r=2;t=20,"per-route";r=1;t=1');
  });

  it('exposes the in-memory keys and evictions per policy as metrics', async () => {
    const clock = { now: 1_700_000_000_000 };
    const svc = services(clock);
    const runtime = await area(yaml, svc);
    const { limit } = stages(runtime, yaml, 'orders');
    for (const sub of ['u1', 'u2', 'u3']) await run(limit, ctx({ sub }));
    const text = await svc.metrics.registry.metrics();
    expect(text).toContain('gatehouse_limit_memory_keys{policy="per-user"} 3');
    expect(text).toContain('gatehouse_limit_memory_keys{policy="per-route"} 1');
    expect(text).toContain('gatehouse_limit_memory_evictions{policy="per-user"} 0');
    await area(yaml, svc); // a reload registers nothing twice
  });

  it('a route without limits gets no stage at all', async () => {
    const runtime = await area(yaml, services({ now: 0 }));
    expect(stages(runtime, yaml, 'open')).toEqual({ preAuth: null, limit: null, onAuthFailure: null });
  });

  it('keeps in-memory budgets across a reload of the same policies', async () => {
    const clock = { now: 1_700_000_000_000 };
    const svc = services(clock);
    const first = await area(yaml, svc);
    for (let i = 0; i < 3; i++) expect(await run(stages(first, yaml, 'orders').limit, ctx({ sub: 'dave' }))).toBeNull();
    const second = await area(yaml, svc);
    expect(((await run(stages(second, yaml, 'orders').limit, ctx({ sub: 'dave' }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    // A plan that is compiled but never started (a failed reload) does not take the tables over.
    const unstarted = await createLimitArea(loadConfigText(BASE + yaml.replace('per-route, key: route', 'renamed, key: route').replace('per-user, per-route]', 'per-user, renamed]')), svc);
    expect(unstarted.issues).toEqual([]);
    const fourth = await area(yaml, svc);
    expect(((await run(stages(fourth, yaml, 'orders').limit, ctx({ sub: 'dave' }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    // A changed policy starts afresh.
    const changed = yaml.replace('limit: 3, window: 1m', 'limit: 4, window: 1m');
    const third = await area(changed, svc);
    expect(await run(stages(third, changed, 'orders').limit, ctx({ sub: 'dave' }))).toBeNull();
  });
});

describe('limit area: quotas and concurrency', () => {
  const yaml = `
rateLimits:
  - { name: slow, key: ip, limit: 2, window: 1s }
quotas:
  - { name: daily, key: ip, limit: 3, period: day }
  - { name: monthly, key: ip, limit: 100, period: month }
  - { name: tiny, key: header:x-api-key, limit: 1, period: day }
routes:
  - { name: q, path: /q, upstream: up, public: true, quotas: [daily, monthly] }
  - { name: rq, path: /rq, upstream: up, public: true, rateLimits: [slow], quotas: [daily] }
  - { name: two, path: /two, upstream: up, public: true, quotas: [monthly, tiny] }
  - { name: c, path: /c, upstream: up, public: true, maxConcurrent: 2 }
  - { name: cr, path: /cr, upstream: up, public: true, maxConcurrent: 1, rateLimits: [slow] }
`;

  it('counts quotas per UTC day and answers 429 GH_ERR_LIMIT_QUOTA_EXCEEDED until midnight', async () => {
    const clock = { now: Date.UTC(2026, 11, 4, 22, 0) };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'q');
    for (let i = 0; i < 3; i++) expect(await run(limit, ctx({ ip: '198.51.100.9' }))).toBeNull();
    const c = ctx({ ip: '198.51.100.9' });
    const denial = (await run(limit, c)) as GatehouseError;
    expect(denial.code).toBe('GH_ERR_LIMIT_QUOTA_EXCEEDED');
    expect(denial.headers?.['retry-after']).toBe('7200');
    expect(header(c, 'ratelimit-policy')).toBe('"daily";q=3;w=86400,"monthly";q=100');
    expect(header(c, 'ratelimit')).toMatch(/^"daily";r=0;t=7200,"monthly";r=96;t=\d+$/);
    clock.now = Date.UTC(2026, 11, 5);
    expect(await run(limit, ctx({ ip: '198.51.100.9' }))).toBeNull();
  });

  it('a request refused by a quota does not use the rate limit either', async () => {
    const clock = { now: Date.UTC(2026, 11, 4, 12) };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'rq');
    const ip = '203.0.113.200';
    for (let i = 0; i < 3; i++) {
      expect(await run(limit, ctx({ ip }))).toBeNull();
      clock.now += 500;
    }
    // The daily quota is used up; the refused requests leave the rate limit (2/s, burst 2) full.
    for (let i = 0; i < 5; i++) expect(((await run(limit, ctx({ ip }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_QUOTA_EXCEEDED');
    const last = ctx({ ip });
    await run(limit, last);
    expect(header(last, 'ratelimit')).toMatch(/^"slow";r=1;t=1,"daily";r=0;t=\d+$/);
  });

  it('a request refused by a rate limit does not use quota', async () => {
    const clock = { now: Date.UTC(2026, 11, 4, 12) };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'rq');
    expect(await run(limit, ctx())).toBeNull();
    expect(await run(limit, ctx())).toBeNull();
    for (let i = 0; i < 5; i++) expect(((await run(limit, ctx())) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    clock.now += 500;
    expect(await run(limit, ctx())).toBeNull(); // third unit of the daily quota of 3
    clock.now += 500;
    expect(((await run(limit, ctx())) as GatehouseError).code).toBe('GH_ERR_LIMIT_QUOTA_EXCEEDED');
  });

  it('a request refused by one quota gives back what the other quotas counted', async () => {
    const clock = { now: Date.UTC(2026, 11, 4, 12) };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'two');
    const withKey = () => ctx({ headers: { 'x-api-key': 'k' } });
    expect(await run(limit, withKey())).toBeNull();
    let last = withKey();
    expect(header(last, 'ratelimit')).toBeUndefined();
    for (let i = 0; i < 10; i++) {
      last = withKey();
      expect(((await run(limit, last)) as GatehouseError).code).toBe('GH_ERR_LIMIT_QUOTA_EXCEEDED');
    }
    expect(header(last, 'ratelimit')).toMatch(/^"monthly";r=98;t=\d+,"tiny";r=0;t=\d+$/); // 99 after the refund
    const next = withKey();
    await run(limit, next);
    expect(header(next, 'ratelimit')).toMatch(/^"monthly";r=98;/);
  });

  it('answers 503 GH_ERR_LIMIT_CONCURRENCY_EXCEEDED past maxConcurrent, and frees the slot on finish', async () => {
    const runtime = await area(yaml, services({ now: 0 }));
    const { limit } = stages(runtime, yaml, 'c');
    const a = ctx();
    const b = ctx();
    expect(await run(limit, a)).toBeNull();
    expect(await run(limit, b)).toBeNull();
    const refused = (await run(limit, ctx())) as GatehouseError;
    expect(refused.code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
    expect(refused.status).toBe(503);
    expect(refused.headers?.['retry-after']).toBe('1');
    a.onFinish.forEach((f) => f());
    const c = ctx();
    expect(await run(limit, c)).toBeNull();
    expect(((await run(limit, ctx())) as GatehouseError).code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
    b.onFinish.forEach((f) => f());
    c.onFinish.forEach((f) => f());
  });

  it('keeps counting the requests in flight across a reload: the new plan cannot admit past maxConcurrent', async () => {
    const svc = services({ now: 1_700_000_000_000 });
    const first = await area(yaml, svc);
    const held = ctx();
    expect(await run(stages(first, yaml, 'c').limit, held)).toBeNull();
    const heldToo = ctx({ ip: '192.0.2.9' });
    expect(await run(stages(first, yaml, 'cr').limit, heldToo)).toBeNull();
    // Reload (same config): requests of the old plan still hold their slots.
    const second = await area(yaml, svc);
    expect(await run(stages(second, yaml, 'c').limit, ctx())).toBeNull();
    expect(((await run(stages(second, yaml, 'c').limit, ctx())) as GatehouseError).code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
    expect(((await run(stages(second, yaml, 'cr').limit, ctx({ ip: '192.0.2.10' }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
    // An old-plan request that ends frees its slot for the new plan.
    held.onFinish.forEach((f) => f());
    heldToo.onFinish.forEach((f) => f());
    expect(await run(stages(second, yaml, 'c').limit, ctx())).toBeNull();
    expect(await run(stages(second, yaml, 'cr').limit, ctx({ ip: '192.0.2.11' }))).toBeNull();
    // A new maxConcurrent applies to the requests already in flight (they are still counted).
    const wider = yaml.replace('maxConcurrent: 2 }', 'maxConcurrent: 3 }');
    const third = await area(wider, svc);
    expect(await run(stages(third, wider, 'c').limit, ctx())).toBeNull();
    expect(((await run(stages(third, wider, 'c').limit, ctx())) as GatehouseError).code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
  });

  it('a request refused by a rate limit takes no concurrency slot', async () => {
    const clock = { now: 1_700_000_000_000 };
    const runtime = await area(yaml, services(clock));
    const { limit } = stages(runtime, yaml, 'cr');
    const first = ctx({ ip: '192.0.2.50' });
    expect(await run(limit, first)).toBeNull();
    first.onFinish.forEach((f) => f());
    const second = ctx({ ip: '192.0.2.50' });
    expect(await run(limit, second)).toBeNull();
    second.onFinish.forEach((f) => f());
    const refused = ctx({ ip: '192.0.2.50' });
    expect(((await run(limit, refused)) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    expect(refused.onFinish).toHaveLength(0);
    expect(await run(limit, ctx({ ip: '192.0.2.51' }))).toBeNull(); // the slot is free
  });
});

describe('limit area: pre-auth limit', () => {
  const yaml = `
preAuthLimit: { limit: 2, window: 1s }
routes:
  - { name: a, path: /a, upstream: up }
  - { name: b, path: /b, upstream: up, public: true }
`;

  it('one bucket per client IP across every route, with headers only on refusal', async () => {
    const clock = { now: 1_700_000_000_000 };
    const runtime = await area(yaml, services(clock));
    const a = stages(runtime, yaml, 'a').preAuth;
    const b = stages(runtime, yaml, 'b').preAuth;
    expect(a).toBe(b);
    const first = ctx();
    expect(await run(a, first)).toBeNull();
    expect(first.responseHeaders).toEqual([]);
    expect(await run(b, ctx())).toBeNull();
    const c = ctx();
    const denial = (await run(a, c)) as GatehouseError;
    expect(denial.code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    expect(denial.headers?.['retry-after']).toBe('1');
    expect(c.responseHeaders).toEqual([
      ['ratelimit-policy', '"pre-auth";q=2;w=1'],
      ['ratelimit', '"pre-auth";r=0;t=1'],
    ]);
    expect(await run(a, ctx({ ip: '192.0.2.2' }))).toBeNull();
    clock.now += 500;
    expect(await run(a, ctx())).toBeNull();
  });

  it('covers the token-handler agent endpoints before routing, answering synchronously in memory', async () => {
    const clock = { now: 1_700_000_000_000 };
    const config = { ...loadConfigText(BASE + yaml), tokenHandler: { basePath: '/tokenhandler/' } } as unknown as Parameters<typeof createLimitArea>[0];
    const runtime = await createLimitArea(config, services(clock));
    await runtime.start!();
    const at = (path: string) => Object.assign(ctx(), { path, id: 'r1', method: 'POST' });
    const written: number[] = [];
    const res = { headersSent: false, writableEnded: false, getHeaderNames: () => [], removeHeader() {}, writeHead: (status: number) => (written.push(status), res), setHeader: () => res, end: () => res } as never;
    // Not an agent path: false at once (no promise), and no budget used.
    expect(runtime.handle!(at('/tokenhandler-not'), null as never, res)).toBe(false);
    expect(runtime.handle!(at('/a'), null as never, res)).toBe(false);
    expect(runtime.handle!(at('/tokenhandler/login/start'), null as never, res)).toBe(false);
    expect(runtime.handle!(at('/tokenhandler'), null as never, res)).toBe(false);
    const refused = at('/tokenhandler/refresh');
    expect(runtime.handle!(refused, null as never, res)).toBe(true);
    expect((refused as { error?: GatehouseError }).error?.code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
    expect(written).toEqual([429]);
  });
});

describe('limit area: config checks', () => {
  it.each([
    ['an unknown key part', `rateLimits: [{ name: r, key: 'cookie:x', limit: 1, window: 1s }]\nroutes: [{ name: a, path: /a, upstream: up }]`, 'rateLimits[0].key'],
    ['a claim key on a public route', `rateLimits: [{ name: r, key: 'claim:sub', limit: 1, window: 1s }]\nroutes: [{ name: a, path: /a, upstream: up, public: true, rateLimits: [r] }]`, 'routes[0].rateLimits[0]'],
    ['a redis store without a redis section', `rateLimits: [{ name: r, key: ip, limit: 1, window: 1s, store: redis }]\nroutes: [{ name: a, path: /a, upstream: up }]`, 'rateLimits[0].store'],
    ['a zero window', `preAuthLimit: { limit: 1, window: 0 }\nroutes: [{ name: a, path: /a, upstream: up }]`, 'preAuthLimit.window'],
    ['an unknown policy name', `routes: [{ name: a, path: /a, upstream: up, quotas: [nope] }]`, 'routes[0].quotas[0]'],
    ['a rate limit named twice on one route (it would count each request twice)', `rateLimits: [{ name: r, key: ip, limit: 4, window: 1m }]\nroutes: [{ name: a, path: /a, upstream: up, public: true, rateLimits: [r, r] }]`, 'routes[0].rateLimits'],
    ['a quota named twice on one route', `quotas: [{ name: q, key: ip, limit: 4, period: day }]\nroutes: [{ name: a, path: /a, upstream: up, public: true, quotas: [q, q] }]`, 'routes[0].quotas'],
  ])('rejects %s', (_what, yaml, path) => {
    let error: unknown;
    try {
      loadConfigText(BASE + yaml);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((i) => i.path)).toContain(path);
  });

  it('names the file, line and key of a policy listed twice on a route', () => {
    const yaml = `${BASE}rateLimits: [{ name: r, key: ip, limit: 4, window: 1m }]\nroutes:\n  - name: a\n    path: /a\n    upstream: up\n    public: true\n    rateLimits: [r, r]\n`;
    expect(() => loadConfigText(yaml, 'limits.yaml')).toThrow(/^limits\.yaml:12:\d+ routes\[0\]\.rateLimits must not repeat items$/);
  });

  it('a config built in code with a policy listed twice on a route is refused by the area', async () => {
    const config = loadConfigText(`${BASE}rateLimits: [{ name: r, key: ip, limit: 4, window: 1m }]\nquotas: [{ name: q, key: ip, limit: 4, period: day }]\nroutes: [{ name: a, path: /a, upstream: up, public: true, rateLimits: [r], quotas: [q] }]`);
    (config.routes[0] as { rateLimits: string[] }).rateLimits = ['r', 'r'];
    (config.routes[0] as { quotas: string[] }).quotas = ['q', 'q'];
    const runtime = await createLimitArea(config, services({ now: 0 }));
    expect(runtime.issues!.map((i) => i.path)).toEqual(['routes[0].rateLimits[1]', 'routes[0].quotas[1]']);
    expect(runtime.issues![0]!.message).toMatch(/"r" a second time/);
  });

  it('a config built in code (no normalize) still gets its key and store problems reported by the area', async () => {
    const config = loadConfigText(`${BASE}routes: [{ name: a, path: /a, upstream: up }]`);
    config.rateLimits.push({ name: 'r', key: 'nonsense', limit: 1, window: 1000, burst: 1, store: 'redis', onStoreError: 'failClosed' });
    const runtime = await createLimitArea(config, services({ now: 0 }));
    expect(runtime.issues!.map((i) => i.path)).toEqual(['redis', 'rateLimits[0].key']);
  });

  it('applies the documented defaults', () => {
    const config = loadConfigText(
      `${BASE}redis: { url: 'redis://127.0.0.1:6379' }\npreAuthLimit: { limit: 10, window: 1s }\nrateLimits: [{ name: r, key: ip, limit: 5, window: 1m }]\nquotas: [{ name: q, key: ip, limit: 5, period: day, onStoreError: failOpen }]\nroutes: [{ name: a, path: /a, upstream: up }]`,
    );
    expect(config.rateLimits[0]).toEqual({ name: 'r', key: 'ip', limit: 5, window: 60_000, burst: 5, store: 'redis', onStoreError: 'failClosed' });
    expect(config.quotas[0]).toMatchObject({ store: 'redis', onStoreError: 'failOpen' });
    expect(config.preAuthLimit).toEqual({ limit: 10, window: 1000, burst: 10, store: 'memory', onStoreError: 'failClosed' });
    expect(config.redis).toMatchObject({ keyPrefix: 'gatehouse:', timeout: 250, onError: 'failClosed' });
    expect(config.memoryStore.maxKeys).toBe(100_000);
  });
});

describe('limit area on Redis', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('limits through Redis, and answers per onStoreError once Redis is gone', async () => {
    const yaml = `
redis: { url: 'redis://127.0.0.1:${0}', timeout: 2s }
rateLimits:
  - { name: strict, key: ip, limit: 2, window: 1m, onStoreError: failClosed }
  - { name: lenient, key: ip, limit: 2, window: 1m, onStoreError: failOpen }
routes:
  - { name: strict, path: /s, upstream: up, public: true, rateLimits: [strict], maxConcurrent: 5 }
  - { name: lenient, path: /l, upstream: up, public: true, rateLimits: [lenient] }
`.replace('redis://127.0.0.1:0', redis.url);
    const runtime = await area(yaml, services({ now: Date.now() }));
    try {
      await runtime.start!();
      expect(runtime.readiness!()).toEqual({ ready: true, details: { redis: 'ready' } });
      const strict = stages(runtime, yaml, 'strict').limit;
      const lenient = stages(runtime, yaml, 'lenient').limit;
      expect(await run(strict, ctx())).toBeNull();
      expect(await run(strict, ctx())).toBeNull();
      const c = ctx();
      expect(((await run(strict, c)) as GatehouseError).code).toBe('GH_ERR_LIMIT_RATE_EXCEEDED');
      expect(header(c, 'ratelimit')).toMatch(/^"strict";r=0;t=30$/);
      // The slot was handed to onFinish before Redis answered, and given back on the refusal.
      c.onFinish.forEach((f) => f());

      await redis.stop();
      await new Promise((r) => setTimeout(r, 50));
      const down = ctx({ ip: '192.0.2.77' });
      const denial = (await run(strict, down)) as GatehouseError;
      expect(denial.code).toBe('GH_ERR_LIMIT_STORE_UNAVAILABLE');
      expect(denial.status).toBe(503);
      down.onFinish.forEach((f) => f()); // released once already: a second call changes nothing
      for (let i = 0; i < 10; i++) expect(((await run(strict, ctx({ ip: `192.0.2.${100 + i}` }))) as GatehouseError).code).toBe('GH_ERR_LIMIT_STORE_UNAVAILABLE');
      expect(await run(lenient, ctx({ ip: '192.0.2.77' }))).toBeNull();
      expect(runtime.readiness!().details?.redis).not.toBe('ready');
    } finally {
      await runtime.close!();
    }
  });
});
