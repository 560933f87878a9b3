import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { namesWebSocket, Tunnels } from '../../src/forward/tunnel.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

describe('namesWebSocket (RFC 9110 §7.8: Upgrade is a list of protocols)', () => {
  it.each([['websocket'], ['WebSocket'], ['h2c, websocket'], [' websocket '], ['websocket/13']])('names WebSocket: %j', (value) => {
    expect(namesWebSocket(value)).toBe(true);
  });

  it.each([[undefined], [''], ['h2c'], ['websockets'], ['notwebsocket'], ['web socket'], ['websocket2']])('does not: %j', (value) => {
    expect(namesWebSocket(value)).toBe(false);
  });
});

describe('Tunnels: places on a route', () => {
  it('reserves up to the route maximum, gives places back, and counts each route apart', () => {
    const tunnels = new Tunnels(pino({ level: 'silent' }), createMetrics(), Date.now);
    expect(tunnels.reserve('chat', 2, 'ip:a', 10)).toBeNull();
    expect(tunnels.reserve('chat', 2, 'ip:b', 10)).toBeNull();
    expect(tunnels.reserve('chat', 2, 'ip:c', 10)).toBe('route');
    expect(tunnels.reserve('feed', 1, 'ip:c', 10)).toBeNull();
    expect(tunnels.count('chat')).toBe(2);
    tunnels.release('chat', 'ip:a');
    expect(tunnels.reserve('chat', 2, 'ip:c', 10)).toBeNull();
    tunnels.release('chat', 'ip:b');
    tunnels.release('chat', 'ip:c');
    expect(tunnels.count('chat')).toBe(0);
    tunnels.release('chat', 'ip:c'); // never below 0
    expect(tunnels.count('chat')).toBe(0);
    expect(tunnels.countOf('chat', 'ip:c')).toBe(0);
  });

  it('holds one client to its own maximum on a route, leaving the others their places', () => {
    const tunnels = new Tunnels(pino({ level: 'silent' }), createMetrics(), Date.now);
    expect(tunnels.reserve('chat', 100, 'sub:main:alice', 2)).toBeNull();
    expect(tunnels.reserve('chat', 100, 'sub:main:alice', 2)).toBeNull();
    expect(tunnels.reserve('chat', 100, 'sub:main:alice', 2)).toBe('client');
    expect(tunnels.count('chat')).toBe(2); // a refused handshake takes no place
    expect(tunnels.reserve('chat', 100, 'sub:main:bob', 2)).toBeNull();
    expect(tunnels.reserve('feed', 100, 'sub:main:alice', 2)).toBeNull(); // per route
    tunnels.release('chat', 'sub:main:alice');
    expect(tunnels.reserve('chat', 100, 'sub:main:alice', 2)).toBeNull();
  });

  it('refuses every place once shutting down', () => {
    const tunnels = new Tunnels(pino({ level: 'silent' }), createMetrics(), Date.now);
    tunnels.closeAll();
    expect(tunnels.reserve('chat', 10, 'ip:a', 10)).toBe('closing');
  });

  it('shows the open count per route in the metrics scrape', async () => {
    const metrics = createMetrics();
    const tunnels = new Tunnels(pino({ level: 'silent' }), metrics, Date.now);
    tunnels.reserve('chat', 5, 'ip:a', 5);
    tunnels.reserve('chat', 5, 'ip:b', 5);
    const text = await metrics.scrape();
    expect(text).toMatch(/gatehouse_websocket_connections\{route="chat"\} 2/);
  });
});
