import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { issuesOf } from '../helpers/config.js';

/** `routes[].websocket` (docs/websockets.md): off unless set, its defaults, and every bad value named by file, line and key. */
const BASE = `listen: { port: 0 }
issuers: [ { name: main, issuer: 'https://id.example.test', jwksUri: 'https://id.example.test/jwks', audiences: [api] } ]
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - name: chat
    path: /chat
    upstream: api
`;

const route = (lines: string) => `${BASE}${lines.split('\n').map((l) => `    ${l}`).join('\n')}\n`;

describe('routes[].websocket', () => {
  it('is off unless set (and `false` is off)', () => {
    expect(loadConfigText(BASE, 'gatehouse.yaml', {}).routes[0]!.websocket).toBeNull();
    expect(loadConfigText(route('websocket: false'), 'gatehouse.yaml', {}).routes[0]!.websocket).toBeNull();
  });

  it('`true` takes the defaults: 5 minutes idle, 24 hours at most, closed at token expiry, 1000 connections, 1 MiB messages', () => {
    expect(loadConfigText(route('websocket: true'), 'gatehouse.yaml', {}).routes[0]!.websocket).toEqual({
      idleTimeout: 300_000,
      maxDuration: 86_400_000,
      closeAtTokenExpiry: true,
      maxConnections: 1000,
      maxConnectionsPerClient: 50,
      maxMessageSize: 1024 * 1024,
      maxMessageRate: null,
    });
  });

  it('takes each setting, durations with units', () => {
    const config = loadConfigText(route('websocket: { idleTimeout: 30s, maxDuration: 2h, closeAtTokenExpiry: false, maxConnections: 50, maxConnectionsPerClient: 5, maxMessageSize: 64kb }'), 'gatehouse.yaml', {});
    expect(config.routes[0]!.websocket).toEqual({ idleTimeout: 30_000, maxDuration: 7_200_000, closeAtTokenExpiry: false, maxConnections: 50, maxConnectionsPerClient: 5, maxMessageSize: 64 * 1024, maxMessageRate: null });
    expect(loadConfigText(route('websocket: { maxMessageRate: 20 }'), 'gatehouse.yaml', {}).routes[0]!.websocket!.maxMessageRate).toBe(20);
    expect(issuesOf(route('websocket: { maxMessageRate: 0 }'))[0]).toMatchObject({ path: 'routes[0].websocket.maxMessageRate' });
  });

  it.each<[string, string, RegExp]>([
    ['an idle timeout of 0', 'websocket: { idleTimeout: 0 }', /routes\[0\]\.websocket\.idleTimeout must be at least 1s: 0 would close every WebSocket connection as it opens/],
    ['a longest duration under a second', 'websocket: { maxDuration: 500ms }', /routes\[0\]\.websocket\.maxDuration must be at least 1s/],
    ['a longest duration past what a timer holds', 'websocket: { maxDuration: 30d }', /routes\[0\]\.websocket\.maxDuration must be at most 24d/],
    ['0 connections', 'websocket: { maxConnections: 0 }', /routes\[0\]\.websocket\.maxConnections/],
    ['0 connections per client', 'websocket: { maxConnectionsPerClient: 0 }', /routes\[0\]\.websocket\.maxConnectionsPerClient/],
    ['a message size of 0', 'websocket: { maxMessageSize: 0 }', /routes\[0\]\.websocket\.maxMessageSize must be at least 1 byte/],
    ['a message size that is no size', 'websocket: { maxMessageSize: lots }', /routes\[0\]\.websocket\.maxMessageSize/],
    ['an unknown key', 'websocket: { maxFrameSize: 1mb }', /routes\[0\]\.websocket\.maxFrameSize is not a known key/],
    ['a string', 'websocket: yes', /routes\[0\]\.websocket/],
    ['a route whose methods leave out GET (the handshake is a GET)', 'methods: [POST]\nwebsocket: true', /routes\[0\]\.websocket needs GET among the route's methods/],
    ['closeAtTokenExpiry on a public route', 'public: true\nwebsocket: { closeAtTokenExpiry: true }', /routes\[0\]\.websocket\.closeAtTokenExpiry cannot be set on a public route/],
  ])('refuses %s, naming the file, line and key', (_what, lines, message) => {
    const issues = issuesOf(route(lines));
    const found = issues.find((i) => message.test(`${i.path} ${i.message}`));
    expect(found, JSON.stringify(issues)).toBeDefined();
    expect(found).toMatchObject({ file: 'gatehouse.yaml', line: expect.toSatisfy((n: number) => n >= 5 && n <= 9) });
  });

  it('a public route takes the other settings', () => {
    const config = loadConfigText(route('public: true\nwebsocket: { idleTimeout: 1m }'), 'gatehouse.yaml', {});
    expect(config.routes[0]!.websocket?.idleTimeout).toBe(60_000);
  });
});
