import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let api: TestUpstream;
let gw: TestGateway;

const config = (limit: number, extraRoute = '') => `
listen: { host: 127.0.0.1, port: 0 }
upstreams: [{ name: api, url: ${api.url} }]
rateLimits:
  - { name: per-ip, key: ip, limit: ${limit}, window: 1h }
routes:
  - { name: a, path: /a, upstream: api, public: true, rateLimits: [per-ip] }${extraRoute}
`;

beforeAll(async () => {
  api = await startUpstream();
  gw = await startTestGateway(config(3));
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
});

async function statuses(n: number, path = '/a'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await request(`${gw.url}${path}`);
    out.push(res.statusCode);
    await res.body.dump();
  }
  return out;
}

describe('in-memory limits across config reloads', () => {
  it('a reload that keeps the policy keeps the budgets; a broken one changes nothing; a changed policy starts afresh', async () => {
    expect(await statuses(2)).toEqual([200, 200]);
    // An unrelated change: the per-ip budget is not handed out again.
    await gw.reload(config(3, '\n  - { name: b, path: /b, upstream: api, public: true }'));
    expect(await statuses(1, '/b')).toEqual([200]);
    expect(await statuses(2)).toEqual([200, 429]);
    // A broken config is refused and the running plan keeps limiting.
    await expect(gw.reload(config(3).replace('key: ip', "key: 'cookie:x'"))).rejects.toThrow(/rateLimits\[0\]\.key/);
    expect(await statuses(1)).toEqual([429]);
    // A new limit is a new policy: fresh budget, new numbers in the headers.
    await gw.reload(config(5));
    const res = await request(`${gw.url}/a`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['ratelimit-policy']).toBe('"per-ip";q=5;w=3600');
    await res.body.dump();
    expect(await statuses(5)).toEqual([200, 200, 200, 200, 429]);
  });
});
