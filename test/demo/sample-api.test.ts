import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startSampleApi, type SampleApi } from '../../src/demo/sample-api.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';

describe('sample API', () => {
  let api: SampleApi;
  let as: AuthorizationServer;
  beforeAll(async () => {
    [api, as] = await Promise.all([startSampleApi(), startAuthorizationServer()]);
  });
  afterAll(async () => {
    await Promise.all([api.close(), as.stop()]);
  });

  test('answers /health', async () => {
    const res = await fetch(`${api.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  test('answers 404 for an unknown path and an unknown order', async () => {
    expect((await fetch(`${api.url}/nothing-here`)).status).toBe(404);
    expect((await fetch(`${api.url}/orders/999`)).status).toBe(404);
  });

  test('answers 405 with Allow for a method it does not serve', async () => {
    const res = await fetch(`${api.url}/orders/1`, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
  });

  test('answers HEAD as GET without the body (a GET route through gatehouse takes HEAD too)', async () => {
    const get = await fetch(`${api.url}/orders/1`);
    const head = await fetch(`${api.url}/orders/1`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(get.headers.get('content-length'));
    expect(await head.text()).toBe('');
    expect((await fetch(`${api.url}/users/alice/orders`, { method: 'HEAD' })).status).toBe(200);
  });

  test('answers a body over 64 KiB with 413 JSON, not a dropped connection (a reset reads as a 502 through the gateway)', async () => {
    const big = JSON.stringify({ item: 'x'.repeat(100_000) });
    const declared = await fetch(`${api.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: string }).error).toBe('invalid_request');
    // Chunked, without a Content-Length: found while reading.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(10_000)));
        controller.close();
      },
    });
    const chunked = await fetch(`${api.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: stream, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
  });

  test('says there was no token when none was sent', async () => {
    const body = (await (await fetch(`${api.url}/orders`)).json()) as { caller: { token: null } };
    expect(body.caller.token).toBeNull();
  });

  test('echoes the decoded JWT payload and the gateway headers of the caller', async () => {
    const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
    const res = await fetch(`${api.url}/orders`, {
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'req-1', 'x-auth-sub': 'demo-client', 'x-other': 'no' },
    });
    const body = (await res.json()) as { orders: unknown[]; caller: { token: string; claims: Record<string, unknown>; headers: Record<string, string> } };
    expect(body.orders.length).toBeGreaterThan(0);
    expect(body.caller.token).toBe('jwt');
    expect(body.caller.claims).toMatchObject({ sub: 'demo-client', iss: as.issuer, scope: 'orders:read' });
    expect(body.caller.headers).toEqual({ 'x-request-id': 'req-1', 'x-auth-sub': 'demo-client' });
  });

  test('tells an opaque token apart from a JWT', async () => {
    const token = await as.clientCredentialsToken('demo-opaque', DEMO_CLIENT_SECRETS['demo-opaque'], 'orders:read');
    const body = (await (await fetch(`${api.url}/opaque/orders/1`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
      order: { id: string };
      caller: { token: string; claims: null };
    };
    expect(body.order.id).toBe('1');
    expect(body.caller).toMatchObject({ token: 'opaque', claims: null });
  });

  test('creates an order owned by the caller', async () => {
    const token = await as.clientCredentialsToken('demo-admin', DEMO_CLIENT_SECRETS['demo-admin'], 'orders:write');
    const res = await fetch(`${api.url}/orders`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'cups', quantity: 4, id: 'chosen-by-client', owner: 'someone-else' }),
    });
    expect(res.status).toBe(201);
    const { order } = (await res.json()) as { order: Record<string, unknown> };
    expect(order).toMatchObject({ item: 'cups', quantity: 4, owner: 'demo-admin' });
    expect(order['id']).not.toBe('chosen-by-client');
    expect((await fetch(`${api.url}/orders/${String(order['id'])}`)).status).toBe(200);
  });

  test('lists one user’s orders under /users/{userId}/orders', async () => {
    const res = await fetch(`${api.url}/users/alice/orders`);
    const body = (await res.json()) as { userId: string; orders: { owner: string }[] };
    expect(body.userId).toBe('alice');
    expect(body.orders.length).toBeGreaterThan(0);
    expect(body.orders.every((o) => o.owner === 'alice')).toBe(true);
    expect((await fetch(`${api.url}/users/alice/orders`, { method: 'POST' })).status).toBe(405);
  });

  test('refuses a body that is not a JSON object', async () => {
    const res = await fetch(`${api.url}/orders`, { method: 'POST', body: '[1,2]', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
  });
});
