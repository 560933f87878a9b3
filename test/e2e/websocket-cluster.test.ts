import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { connect, opened, startWebSocketUpstream, type WebSocketUpstream } from '../helpers/websocket.js';

/**
 * WebSockets through `gatehouse start --workers 2` (the built CLI, as a user runs it): the
 * primary hands connections to both workers, each worker counts its own, and a SIGTERM ends
 * every open connection with a close frame (1001) on both sides before the process exits 0.
 */
let upstream: WebSocketUpstream;
let gateway: Cluster;
let url: string;

beforeAll(async () => {
  upstream = await startWebSocketUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-ws-cluster-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `
listen: { host: 127.0.0.1, port: 0 }
upstreams: [ { name: live, url: ${upstream.url} } ]
routes: [ { name: live, path: /live, upstream: live, public: true, websocket: true } ]
`,
  );
  gateway = startCluster(file, '2');
  const started = await gateway.waitFor((l) => l.msg === 'gatehouse started', 2, 30_000);
  url = Object.values(started[0]!.listeners as Record<string, string>)[0]!.replace(/^http/, 'ws');
}, 60_000);

afterAll(async () => {
  if (gateway && gateway.child.exitCode === null) {
    gateway.child.kill('SIGKILL');
    await gateway.exited;
  }
  await upstream?.close();
});

describe('WebSockets with --workers 2', () => {
  it('carries connections on both workers, and SIGTERM closes each with 1001 on both sides, then exits 0', async () => {
    const sockets = [];
    for (let i = 0; i < 4; i++) {
      const socket = opened(await connect(`${url}/live`));
      socket.ws.send(`hello ${i}`);
      expect(await socket.next()).toBe(`echo:hello ${i}`);
      sockets.push(socket);
    }
    // The handshakes' access-log lines come from both workers (a worker's request ids share a
    // random prefix; only the counter at the end differs).
    await new Promise((r) => setTimeout(r, 300));
    const handshakes = gateway.lines.filter((l) => l.msg === 'request' && l.status === 101);
    expect(handshakes).toHaveLength(4);
    expect(new Set(handshakes.map((l) => String(l.req_id).slice(0, 24))).size).toBe(2);

    gateway.child.kill('SIGTERM');
    for (const socket of sockets) expect(await socket.closed).toEqual({ code: 1001, reason: 'going away' });
    expect(await gateway.exited).toBe(0);
    const closed = gateway.lines.filter((l) => l.msg === 'websocket closed');
    expect(closed.map((l) => l.reason)).toEqual(['shutdown', 'shutdown', 'shutdown', 'shutdown']);
    await new Promise((r) => setTimeout(r, 200));
    expect(upstream.closes.filter((c) => c.url === '/live').map((c) => c.code)).toEqual([1001, 1001, 1001, 1001]);
  }, 60_000);
});
