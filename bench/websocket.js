#!/usr/bin/env node
// WebSocket relay benchmark: what a message costs gatehouse once a connection is open
// (dist/forward/tunnel.ts: both sockets read, each chunk's frame headers read, written on).
// `gatehouse start --workers 1` pinned to core 0 (when taskset exists) in front of a `ws` echo
// server; the clients (this process) and the echo server share core 1. C connections each send a
// message of S bytes and wait for its echo, for D seconds, once through gatehouse and once to
// the echo server directly. Prints round trips per second, the client-side latency, and
// gatehouse's CPU per round trip (two messages relayed: one each way) from /proc.
//
//   npm run build && node bench/websocket.js [--connections 50] [--size 64] [--seconds 5]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket, { WebSocketServer } from 'ws';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: { connections: { type: 'string', default: '50' }, size: { type: 'string', default: '64' }, seconds: { type: 'string', default: '5' } },
});
const CONNECTIONS = Number(opts.connections);
const SIZE = Number(opts.size);
const SECONDS = Number(opts.seconds);
const BIN = path.join(ROOT, 'bin/gatehouse.js');
if (!existsSync(path.join(ROOT, 'dist/forward/tunnel.js'))) {
  console.error('bench/websocket.js: run `npm run build` first');
  process.exit(1);
}
const taskset = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0;
if (taskset) spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

// The echo upstream (in this process, on core 1 with the clients).
const server = http.createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const upstream = `http://127.0.0.1:${server.address().port}`;

const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-ws-'));
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  `listen: { host: 127.0.0.1, port: 0 }
log: { level: info, accessLog: false }
upstreams: [ { name: echo, url: ${upstream} } ]
routes: [ { name: echo, path: /, upstream: echo, public: true, websocket: { maxConnections: 100000 } } ]
`,
);
const args = [BIN, 'start', '--config', file, '--workers', '1'];
const child = taskset ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
const gatewayUrl = await new Promise((resolve, reject) => {
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    for (const line of buffered.split('\n')) {
      try {
        const parsed = JSON.parse(line);
        if (parsed.msg === 'gatehouse started' && parsed.listeners) resolve(Object.values(parsed.listeners)[0]);
      } catch {
        /* a partial line */
      }
    }
  });
  child.once('exit', (code) => reject(new Error(`gatehouse exited (${code})`)));
});
// The worker is the process that serves: the primary's only child.
const workerPid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).pop() || child.pid);

function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, clock ticks of 10 ms
}

/** C connections ping-ponging S-byte messages for D seconds. */
async function run(base, pid) {
  const payload = Buffer.alloc(SIZE, 0x61);
  const sockets = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/echo`, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    })),
  );
  const latencies = [];
  let trips = 0;
  let running = true;
  // warm-up, then the measured window
  const go = (ws) => {
    let sent = performance.now();
    ws.on('message', () => {
      const now = performance.now();
      if (running) {
        trips++;
        if (latencies.length < 2_000_000) latencies.push(now - sent);
        sent = now;
        ws.send(payload);
      }
    });
    ws.send(payload);
  };
  sockets.forEach(go);
  await new Promise((r) => setTimeout(r, 2000));
  trips = 0;
  latencies.length = 0;
  const cpu0 = pid ? cpuMs(pid) : 0;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = pid ? cpuMs(pid) - cpu0 : 0;
  const measured = trips;
  running = false;
  for (const ws of sockets) ws.terminate();
  latencies.sort((a, b) => a - b);
  return {
    perSecond: measured / elapsed,
    p50: latencies[Math.floor(latencies.length * 0.5)],
    p99: latencies[Math.floor(latencies.length * 0.99)],
    cpuUsPerTrip: pid ? (cpu * 1000) / measured : null,
  };
}

const direct = await run(upstream, null);
const through = await run(gatewayUrl, workerPid);
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));
wss.close();
server.close();

const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
console.log(`bench/websocket.js: ${CONNECTIONS} connections, ${SIZE}-byte messages, ${SECONDS}s after 2s warm-up${taskset ? '; gatehouse on core 0, clients and echo server on core 1' : ''}`);
console.log('| path | round trips/s | p50 ms | p99 ms | gatehouse CPU µs per round trip |');
console.log('|---|--:|--:|--:|--:|');
console.log(`| direct to the echo server | ${fmt(direct.perSecond)} | ${fmt(direct.p50, 2)} | ${fmt(direct.p99, 2)} | — |`);
console.log(`| through gatehouse | ${fmt(through.perSecond)} | ${fmt(through.p50, 2)} | ${fmt(through.p99, 2)} | ${fmt(through.cpuUsPerTrip, 1)} |`);
