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
    expect(tunnels.reserve('chat', 2)).toBe(true);
    expect(tunnels.reserve('chat', 2)).toBe(true);
    expect(tunnels.reserve('chat', 2)).toBe(false);
    expect(tunnels.reserve('feed', 1)).toBe(true);
    expect(tunnels.count('chat')).toBe(2);
    tunnels.release('chat');
    expect(tunnels.reserve('chat', 2)).toBe(true);
    tunnels.release('chat');
    tunnels.release('chat');
    tunnels.release('chat');
    expect(tunnels.count('chat')).toBe(0);
    tunnels.release('chat'); // never below 0
    expect(tunnels.count('chat')).toBe(0);
  });

  it('refuses every place once shutting down', () => {
    const tunnels = new Tunnels(pino({ level: 'silent' }), createMetrics(), Date.now);
    tunnels.closeAll();
    expect(tunnels.reserve('chat', 10)).toBe(false);
  });

  it('shows the open count per route in the metrics scrape', async () => {
    const metrics = createMetrics();
    const tunnels = new Tunnels(pino({ level: 'silent' }), metrics, Date.now);
    tunnels.reserve('chat', 5);
    tunnels.reserve('chat', 5);
    const text = await metrics.scrape();
    expect(text).toMatch(/gatehouse_websocket_connections\{route="chat"\} 2/);
  });
});
