import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let api: TestUpstream;
let gw: TestGateway;

const config = (extraRoute = '') => `
listen: { host: 127.0.0.1, port: 0 }
upstreams: [{ name: api, url: ${api.url} }]
routes:
  - { name: one, path: /one, upstream: api, public: true, maxConcurrent: 1 }${extraRoute}
`;

beforeAll(async () => {
  api = await startUpstream();
  gw = await startTestGateway(config());
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
});

describe('maxConcurrent across a config reload', () => {
  it('a request in flight on the old plan still holds its slot on the new one; once it ends, the next passes', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    let calls = 0;
    api.setHandler((_req, res) => {
      // Only the first request is held: one let through by mistake answers at once (no hang).
      if (++calls > 1) return void res.end('let through');
      arrived();
      void held.then(() => res.end('done'));
    });
    try {
      const first = request(`${gw.url}/one`);
      await arrival;
      // Same policy, unrelated change: the route's count must not start again at 0.
      await gw.reload(config('\n  - { name: two, path: /two, upstream: api, public: true }'));
      const before = api.requests.length;
      const second = await request(`${gw.url}/one`);
      expect(second.statusCode).toBe(503);
      expect(((await second.body.json()) as { code: string }).code).toBe('GH_ERR_LIMIT_CONCURRENCY_EXCEEDED');
      expect(api.requests.length).toBe(before);
      release();
      const done = await first;
      expect(done.statusCode).toBe(200);
      expect(await done.body.text()).toBe('done');
      api.setHandler(null);
      const third = await request(`${gw.url}/one`);
      expect(third.statusCode).toBe(200);
      await third.body.dump();
    } finally {
      release();
      api.setHandler(null);
    }
  });
});
