#!/usr/bin/env node
// `npm run bench` (issue 8): gatehouse side by side with a bare Node pass-through baseline,
// measured in the same run, on one pinned core.
//
//   npm run bench -- [--duration 5] [--warmup 4] [--connections 50] [--only REGEX] [--markdown]
//
// Layout on a 2-core box: the process under test (baseline or gatehouse) on core 0; the load
// generator, the upstream (nginx when present), redis-server, the JWKS server and the
// development authorization server (this process) on core 1.
//
// Uses, when present (Debian packages; nothing is installed here):
//   wrk (wrk), nginx (nginx-light), h2load (nghttp2-client), redis-server (redis-server),
//   taskset (util-linux), openssl (openssl; only when dist/demo/dev-cert.js is missing).
// Falls back to autocannon (node_modules) without wrk and to a Node upstream without nginx.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exportJWK, exportSPKI, generateKeyPair } from 'jose';
import { Agent, request } from 'undici';
import { BENCH_AUDIENCE, cpuMicros, freePort, gatewayV8Flags, nginxPath, signBenchToken, tokenScript, UPSTREAM_BODY, which, writeNginxConfig } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let GATEHOUSE_ROOT = ROOT;
const AUDIENCE = BENCH_AUDIENCE;

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '4' },
    connections: { type: 'string', default: '50' },
    'paced-rate': { type: 'string', default: '3000' },
    only: { type: 'string' },
    repeat: { type: 'string', default: '1' },
    markdown: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    gatehouse: { type: 'string' },
    'no-baseline': { type: 'boolean', default: false },
    'no-pairing': { type: 'boolean', default: false },
    report: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opts.help) {
  process.stdout.write(`usage: npm run bench -- [--duration S] [--warmup S] [--connections N] [--only REGEX] [--repeat N] [--markdown] [--profile]\n  --repeat N  measure each scenario N times (same process) and report the median run\n  --paced-rate R  the fixed rate of the "paced" rows, req/s over all connections (default 3000)\n  --gatehouse DIR  run the gatehouse built in another checkout (A/B comparisons of a change)\n  --report FILE  print the table and the targets of a saved bench/results/*.json, run nothing\n  --no-baseline  skip the baseline runs (ratios are then missing)\n  --no-pairing  measure the baseline only at the start and the end, not next to every scenario\n  --profile  run gatehouse with --cpu-prof and print its hottest functions per scenario\n`);
  process.exit(0);
}
const DURATION = Number(opts.duration);
if (opts.gatehouse) GATEHOUSE_ROOT = path.resolve(opts.gatehouse);
const WARMUP = Number(opts.warmup);
const CONNECTIONS = Number(opts.connections);
// The paced rows: the same 50 connections, each waiting a random time before each request (wrk's
// delay()), so that latency is compared at one offered load instead of at each process's own
// saturation.
const PACED_RATE = Number(opts['paced-rate']);
if (!(PACED_RATE > 0)) {
  process.stderr.write(`bench: --paced-rate must be a positive number of requests per second, not "${opts['paced-rate']}"\n`);
  process.exit(2);
}
const PACED = `paced ${PACED_RATE.toLocaleString('en-US')} req/s`;
const REPEAT = Math.max(1, Number(opts.repeat) || 1);
const ONLY = opts.only ? new RegExp(opts.only, 'i') : null;

// ---------------------------------------------------------------------------------------------
// Tools

const tools = {
  wrk: which('wrk'),
  nginx: nginxPath(),
  h2load: which('h2load'),
  redis: which('redis-server') ?? (existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : null),
  taskset: which('taskset'),
  haproxy: which('haproxy') ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : null),
  openssl: which('openssl'),
};
// Every gatehouse process runs with these V8 flags (src/boot/v8-flags.ts); the baseline and the
// references get the same, so that both sides of a ratio run on the same runtime settings.
const RUNTIME_FLAGS = [...(await gatewayV8Flags(GATEHOUSE_ROOT))];
const CORES = availableParallelism();
const PIN = tools.taskset && CORES >= 2;

const missing = [];
if (!tools.wrk) missing.push('wrk (Debian: wrk) — using autocannon from node_modules instead');
if (!tools.nginx) missing.push('nginx (Debian: nginx-light) — using a Node upstream instead');
if (!tools.h2load) missing.push('h2load (Debian: nghttp2-client) — the HTTP/2 scenario is skipped');
if (!tools.haproxy) missing.push('haproxy (Debian: haproxy) — the HAProxy jwt_verify peer is skipped');
if (!tools.redis) missing.push('redis-server (Debian: redis-server) — the Redis rate-limit scenario is skipped');
if (!PIN) missing.push(tools.taskset ? `only ${CORES} core(s): no pinning` : 'taskset (Debian: util-linux) — processes are not pinned');

function pinned(core, cmd, args) {
  return PIN ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
}

// This process (load generator with autocannon, JWKS, authorization server) stays off core 0.
if (PIN) spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const children = new Set();

function start(core, cmd, args, options = {}) {
  const [c, a] = pinned(core, cmd, args);
  const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  child.output = '';
  child.stdout.on('data', (d) => {
    if (child.output.length < 64 * 1024) child.output += d;
  });
  child.stderr.on('data', (d) => {
    if (child.output.length < 64 * 1024) child.output += d;
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stop(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

let workDir = null;
let lockHeld = false;
const LOCK = path.join(tmpdir(), 'gatehouse-bench.lock');

/** One bench at a time on a machine: two runs pinned to the same core spoil each other's figures. */
async function acquireLock() {
  let waited = false;
  for (;;) {
    try {
      writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      lockHeld = true;
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(LOCK, 'utf8'));
    let alive = false;
    try {
      process.kill(holder, 0);
      alive = holder > 0;
    } catch {
      alive = false;
    }
    if (!alive) {
      rmSync(LOCK, { force: true });
      continue;
    }
    if (!waited) process.stderr.write(`bench: another bench run (pid ${holder}) is running; waiting for it to finish\n`);
    waited = true;
    await sleep(1000);
  }
}

function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  if (lockHeld) rmSync(LOCK, { force: true });
  if (workDir && !opts.profile) rmSync(workDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

/** Read and write system calls of a process so far (/proc/PID/io syscr + syscw), or NaN. */
function syscalls(pid) {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const r = /syscr:\s+(\d+)/.exec(io);
    const w = /syscw:\s+(\d+)/.exec(io);
    return r && w ? Number(r[1]) + Number(w[1]) : NaN;
  } catch {
    return NaN;
  }
}

function rssMiB(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const insecureAgent = new Agent({ connect: { rejectUnauthorized: false } });

/** One request; resolves { status, body }. */
async function probe(url, headers = {}) {
  const res = await request(url, { headers, dispatcher: url.startsWith('https:') ? insecureAgent : undefined });
  const body = await res.body.text();
  return { status: res.statusCode, body };
}

async function waitReady(url, child, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}):\n${child.output}`);
    try {
      await probe(url);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${what} did not answer on ${url} within ${timeoutMs} ms:\n${child?.output ?? ''}`);
      await sleep(50);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream: nginx (nginx-light) serving a ~100-byte answer, else a minimal Node server.

async function startUpstream(dir) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  if (tools.nginx) {
    const args = writeNginxConfig(path.join(dir, 'nginx'), port);
    const child = start(1, tools.nginx, args);
    await waitReady(url, child, 'nginx');
    return { kind: 'nginx', url, child };
  }
  const script = `
const http = require('node:http');
const body = Buffer.from(${JSON.stringify(UPSTREAM_BODY)});
http.createServer({ keepAliveTimeout: 65000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}).listen(${port}, '127.0.0.1');`;
  const child = start(1, process.execPath, ['-e', script]);
  await waitReady(url, child, 'node upstream');
  return { kind: 'node', url, child };
}

// ---------------------------------------------------------------------------------------------
// Keys, tokens and a JWKS endpoint (served from this process, core 1).

const ALGS = ['RS256', 'ES256', 'EdDSA'];

async function startIssuer() {
  const keys = {};
  const jwks = { keys: [] };
  for (const alg of ALGS) {
    const { publicKey, privateKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
    const jwk = await exportJWK(publicKey);
    const kid = `bench-${alg.toLowerCase()}`;
    jwks.keys.push({ ...jwk, kid, alg, use: 'sig' });
    keys[alg] = { privateKey, kid, spki: await exportSPKI(publicKey) };
  }
  const body = JSON.stringify(jwks);
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const mint = (alg, sub = 'bench-user', n = 0) => signBenchToken({ alg, kid: keys[alg].kid, issuer, privateKey: keys[alg].privateKey, n, sub });
  return { issuer, jwksUri: `${issuer}/jwks`, mint, publicKeyPem: (alg) => keys[alg].spki, close: () => new Promise((r) => server.close(r)) };
}

// ---------------------------------------------------------------------------------------------
// gatehouse config

function gatewayConfig(o) {
  const tls = o.tls ? `\n    tls: { cert: ${JSON.stringify(o.tls.cert)}, key: ${JSON.stringify(o.tls.key)}, http2: ${o.http2 ? 'true' : 'false'}, hsts: { enabled: false } }` : '';
  const opaque = o.authServer
    ? `
  - name: opaque
    issuer: ${o.authServer.issuer}
    discovery: true
    audiences: [${o.authServer.audience}]
    introspection:
      clientId: gateway
      clientSecret: ${o.authServer.gatewaySecret}
      cacheTtl: 5m`
    : '';
  const redis = o.redisUrl ? `redis: { url: ${o.redisUrl}, timeout: 1s }\n` : '';
  const redisLimit = o.redisUrl ? `\n  - { name: bench-redis, key: claim:sub, limit: 100000000, window: 1s, store: redis }` : '';
  const redisRoute = o.redisUrl ? `\n  - { name: limited-redis, path: /limited-redis, upstream: api, issuers: [bench], scopes: [orders:read], rateLimits: [bench-redis] }` : '';
  const phantomRoute = o.authServer ? `\n  - { name: phantom, path: /phantom, upstream: api, issuers: [opaque], scopes: [orders:read] }` : '';
  return `# generated by bench/run.js
listen:
  - name: main
    host: 127.0.0.1
    port: ${o.port}${tls}
log: { level: warn, accessLog: ${o.accessLog ? 'true' : 'false'} }
tokenCache: { enabled: ${o.tokenCache === false ? 'false' : 'true'}, maxEntries: 10000 }
${redis}issuers:
  - name: bench
    issuer: ${o.issuer.issuer}
    jwksUri: ${o.issuer.jwksUri}
    audiences: [${AUDIENCE}]
    algorithms: [RS256, ES256, EdDSA]${opaque}
upstreams:
  - { name: api, url: ${o.upstreamUrl}, audience: ${AUDIENCE} }
  - { name: api-bare, url: ${o.upstreamUrl}, forwardedHeaders: [] }
rateLimits:
  - { name: bench-memory, key: claim:sub, limit: 100000000, window: 1s, store: memory }${redisLimit}
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - { name: public-bare, path: /public-bare, upstream: api-bare, public: true }
  - { name: jwt, path: /jwt, upstream: api, issuers: [bench] }
  - { name: scoped, path: /scoped, upstream: api, issuers: [bench], scopes: [orders:read] }
  - name: claims
    path: '/users/{userId}/orders'
    upstream: api
    issuers: [bench]
    scopes: [orders:read]
    claims:
      - claims.sub == request.params.userId
      - 'claims.tenant == request.headers["x-tenant"]'
  - { name: limited, path: /limited, upstream: api, issuers: [bench], scopes: [orders:read], rateLimits: [bench-memory] }${redisRoute}${phantomRoute}
`;
}

// ---------------------------------------------------------------------------------------------
// Load generators

function parseDuration(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

/**
 * Run a load generator pinned to core 1; resolves its exit code and output. It is killed after
 * `limitMs` (h2load has been seen to run on long past its duration): never let it hold the bench.
 */
function runTool(name, bin, args, limitMs) {
  const [cmd, a] = pinned(1, bin, args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.once('error', reject);
    let killed = false;
    const guard = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.once('exit', (code) => {
      clearTimeout(guard);
      if (killed) return reject(new Error(`${name} still running after ${Math.round(limitMs / 1000)} s; killed`));
      if (code !== 0) return reject(new Error(`${name} failed (${code}): ${out}`));
      resolve(out);
    });
  });
}

/** Runs wrk for `seconds`; resolves { requests, rps, p50, p99, errors } (latencies in ms). */
function runWrk(target, seconds, dir) {
  const args = ['-t', '1', '-c', String(CONNECTIONS), '-d', `${seconds}s`, '--latency', '--timeout', '5s'];
  for (const [k, v] of Object.entries(target.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (target.rate) {
    // Paced: each connection waits a random, exponentially distributed time before each request
    // (Poisson arrivals, the same pseudo-random sequence in every run), so that the offered load is
    // about `rate` req/s, smooth rather than in bursts of every connection at once. The mean wait
    // leaves room for the request itself (≈ 0.3 ms on loopback); the row reports the rate reached.
    const meanMs = Math.max(0.1, (CONNECTIONS / target.rate) * 1000 - 0.3);
    const script = path.join(dir, 'paced.lua');
    writeFileSync(script, `local mean = ${meanMs}\ndelay = function()\n  return -math.log(1 - math.random()) * mean\nend\n`);
    args.push('-s', script);
    if (target.tokens?.length) args.push('-H', `Authorization: Bearer ${target.tokens[0]}`);
  } else if (target.tokens && target.tokens.length > 1) {
    const script = path.join(dir, 'rotate.lua');
    writeFileSync(script, tokenScript(target.tokens));
    args.push('-s', script);
  } else if (target.tokens && target.tokens.length === 1) {
    args.push('-H', `Authorization: Bearer ${target.tokens[0]}`);
  }
  args.push(target.url);
  return runTool('wrk', tools.wrk, args, (seconds + 30) * 1000).then((out) => {
    const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
    const p50 = parseDuration(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
    const p99 = parseDuration(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const socketErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
    return { requests, rps, p50, p99, errors: non2xx + socketErrors, raw: out };
  });
}

/** autocannon fallback (in this process, which is pinned to core 1). */
async function runAutocannon(target, seconds) {
  const { default: autocannon } = await import('autocannon');
  const tokens = target.tokens ?? [];
  let i = 0;
  const headers = { ...(target.headers ?? {}) };
  const result = await autocannon({
    url: target.url,
    connections: CONNECTIONS,
    duration: seconds,
    headers: tokens.length === 1 ? { ...headers, authorization: `Bearer ${tokens[0]}` } : headers,
    requests:
      tokens.length > 1
        ? [
            {
              setupRequest: (req) => {
                i = (i + 1) % tokens.length;
                req.headers = { ...req.headers, authorization: `Bearer ${tokens[i]}` };
                return req;
              },
            },
          ]
        : undefined,
  });
  return {
    requests: result.requests.total,
    rps: result.requests.total / seconds,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

/** h2load (HTTP/2 over TLS): latencies from its per-request log. */
function runH2load(target, seconds, dir, count = 0) {
  const logFile = path.join(dir, 'h2load.log');
  rmSync(logFile, { force: true });
  // `count`: a fixed number of requests instead of a duration (the warm-up). In timing mode
  // (-D) h2load has been seen to run on forever when some of its clients finish their TLS
  // handshake only after the duration is over (a freshly started, still cold gateway): it
  // prints "Stopped all clients" and those clients go on sending requests. A count-based
  // warm-up makes the first contact safe; runTool's time limit bounds the rest.
  const args = ['-c', String(CONNECTIONS), '-m', '1', '-t', '1', ...(count > 0 ? ['-n', String(count)] : ['-D', String(seconds)]), '--log-file', logFile];
  for (const [k, v] of Object.entries(target.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (target.tokens?.length) args.push('-H', `authorization: Bearer ${target.tokens[0]}`);
  args.push(target.url);
  return runTool('h2load', tools.h2load, args, (count > 0 ? 60 : seconds + 30) * 1000).then((out) => {
    const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
    if (!m || Number(m[4]) === 0) throw new Error(`h2load: no successful request (is HTTP/2 offered?)\n${out.slice(-800)}`);
    const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
    const times = [];
    try {
      for (const line of readFileSync(logFile, 'utf8').split('\n')) {
        const cols = line.split('\t');
        if (cols.length >= 3) times.push(Number(cols[2]) / 1000); // µs → ms
      }
    } catch {
      /* no log: no percentiles */
    }
    times.sort((x, y) => x - y);
    const pct = (p) => (times.length ? times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] : NaN);
    const done = Number(m[3]);
    const took = count > 0 ? Number(/finished in ([\d.]+)s/.exec(out)?.[1] ?? seconds) : seconds;
    return {
      requests: done,
      rps: done / took,
      p50: pct(50),
      p99: pct(99),
      errors: Number(m[5]) + Number(m[6]) + (status ? Number(status[3]) + Number(status[4]) : 0),
    };
  });
}

function drive(target, seconds, dir, warmup = false) {
  if (target.protocol === 'h2') return runH2load(target, seconds, dir, warmup ? Math.max(500, Math.round(seconds * 1000)) : 0);
  // A paced row warms up like the others (as fast as it goes), then measures at its rate.
  if (target.rate && warmup) return drive({ ...target, rate: undefined }, seconds, dir, true);
  return tools.wrk ? runWrk(target, seconds, dir) : runAutocannon(target, seconds);
}

/**
 * Warm up, then measure REPEAT times; the run with the median req/s is reported. With `paired`
 * (the baseline process, kept running for the whole bench), each run of the scenario follows a
 * run of the baseline, and the row carries the median of those baseline runs: on a shared
 * machine whose speed drifts by tens of percent within minutes, a ratio is only meaningful
 * against a baseline measured next to it.
 */
async function measure(pid, target, dir, paired = null) {
  const from = Number(process.hrtime.bigint() / 1000n); // same monotonic clock as V8 profiles
  const warm = WARMUP > 0 ? await drive(target, WARMUP, dir, true) : { requests: 0 };
  const runs = [];
  const baseRuns = [];
  const pairRatios = [];
  // The baseline gets the same request bytes (headers, the same token or the same rotation): what
  // a row adds over it is gatehouse's work, not the cost of parsing and passing on a 500-byte token.
  let baseTarget = null;
  if (paired) {
    // A fresh baseline, warmed like the scenario's process with the scenario's own request.
    await paired.restart();
    baseTarget = { ...paired.target, headers: target.headers, tokens: target.tokens, rate: target.rate };
    await drive(baseTarget, WARMUP || 1, dir, true);
  }
  for (let i = 0; i < REPEAT; i++) {
    if (paired) {
      const failed = (err) => ({ requests: 0, failure: err.message.split('\n').slice(0, 3).join(' ') });
      let b = await measureOnce(paired.pid, baseTarget, dir).catch(failed);
      if (!(b.requests > 0)) {
        // The paired baseline stopped answering: say why, start a new one, try once more.
        await paired.restart(b.failure ?? `${b.requests} requests`);
        b = await measureOnce(paired.pid, baseTarget, dir).catch(failed);
      }
      if (b.requests > 0) baseRuns.push(b);
      else baseRuns.push(null);
    }
    const run = await measureOnce(pid, target, dir);
    runs.push(run);
    // The ratio of this run to the baseline run just before it: drift between pairs cancels.
    const b = paired ? baseRuns.at(-1) : null;
    if (b && run.cpuPerReq > 0) pairRatios.push(b.cpuPerReq / run.cpuPerReq);
    if (b && process.env.BENCH_DEBUG) process.stderr.write(`bench: paired run: baseline ${b.cpuPerReq.toFixed(0)} µs/req, scenario ${run.cpuPerReq.toFixed(0)} µs/req\n`);
  }
  runs.sort((a, b) => a.rps - b.rps);
  const median = runs[Math.floor(runs.length / 2)];
  const served = warm.requests + runs.reduce((a, r) => a + r.requests, 0);
  const result = REPEAT > 1 ? { ...median, served, from, runs: runs.map((r) => ({ rps: r.rps, cpuPerReq: r.cpuPerReq, p50: r.p50, p99: r.p99 })) } : { ...median, served, from };
  const goodBase = baseRuns.filter((r) => r !== null);
  if (paired && goodBase.length > 0) {
    const mid = (key) => goodBase.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(goodBase.length / 2)];
    // Capacity: the median of the per-pair ratios (the mean of the middle two for an even count).
    const sorted = pairRatios.sort((a, b) => a - b);
    const n = sorted.length;
    const capacity = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    result.base = { rps: mid('rps'), cpuPerReq: mid('cpuPerReq'), syscallsPerReq: mid('syscallsPerReq'), p50: mid('p50'), p99: mid('p99'), capacity };
  }
  return result;
}

/** One measured run: load figures + CPU µs/request and RSS of `pid`. */
async function measureOnce(pid, target, dir) {
  const cpu0 = cpuMicros(pid);
  const sys0 = syscalls(pid);
  let rssMax = rssMiB(pid);
  const sampler = setInterval(() => {
    const r = rssMiB(pid);
    if (r > rssMax) rssMax = r;
  }, 250);
  try {
    const load = await drive(target, DURATION, dir);
    const cpu = cpuMicros(pid) - cpu0;
    const sys = syscalls(pid) - sys0;
    const r = rssMiB(pid);
    if (r > rssMax) rssMax = r;
    if (process.env.BENCH_DEBUG) process.stderr.write(`bench: ${load.requests} requests, ${(cpu / load.requests).toFixed(1)} µs/req, ${(sys / load.requests).toFixed(2)} read/write syscalls/req\n`);
    return { ...load, cpuPerReq: load.requests > 0 ? cpu / load.requests : NaN, syscallsPerReq: load.requests > 0 ? sys / load.requests : NaN, rss: rssMax };
  } finally {
    clearInterval(sampler);
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

function scenarios(ctx) {
  const list = [];
  list.push({ name: 'public route', path: '/public' });
  // What the forwarding headers cost (issue 2 has gatehouse send all four by default).
  list.push({ name: 'public route, no forwarding headers', path: '/public-bare' });
  // The like-for-like floor of the public route: the bare pass-through sending those headers too.
  list.push({ name: 'reference: pass-through + the same headers', path: '/public', reference: 'headers' });
  for (const alg of ALGS) {
    list.push({ name: `JWT ${alg}, one token reused`, path: '/jwt', tokens: [ctx.tokens[alg][0]] });
    list.push({ name: `JWT ${alg}, 1000 rotating tokens`, path: '/jwt', tokens: ctx.tokens[alg] });
    list.push({ name: `JWT ${alg}, cold (no token cache)`, path: '/jwt', tokens: [ctx.tokens[alg][0]], gateway: { tokenCache: false } });
    // The issue's peers, measured in the same run: bench/baseline.js validating every token.
    list.push({ name: `reference: jose jwtVerify, ${alg}, no cache`, path: '/jwt', tokens: [ctx.tokens[alg][0]], reference: 'jose' });
    list.push({ name: `reference: sync crypto.verify, ${alg}, no cache`, path: '/jwt', tokens: [ctx.tokens[alg][0]], reference: 'sync' });
    if (alg !== 'EdDSA') {
      list.push({
        name: `peer: HAProxy jwt_verify, ${alg} (no cache)`,
        path: '/jwt',
        tokens: [ctx.tokens[alg][0]],
        reference: 'haproxy',
        alg,
        skip: tools.haproxy ? null : 'no haproxy (Debian: haproxy)',
      });
    }
  }
  // The like-for-like reference of the limit and phantom rows (they check the same scope).
  list.push({ name: 'JWT ES256 + scope', path: '/scoped', tokens: [ctx.tokens.ES256[0]] });
  list.push({
    name: 'JWT ES256 + scope + 2 claim rules',
    path: '/users/bench-user/orders',
    tokens: [ctx.tokens.ES256[0]],
    headers: { 'x-tenant': 'acme' },
  });
  list.push({ name: 'JWT ES256 + scope + memory rate limit', path: '/limited', tokens: [ctx.tokens.ES256[0]] });
  list.push({
    name: 'JWT ES256 + scope + Redis rate limit',
    path: '/limited-redis',
    tokens: [ctx.tokens.ES256[0]],
    skip: ctx.redisUrl ? null : 'no redis-server (Debian: redis-server)',
  });
  list.push({
    name: 'phantom token, warm cache',
    path: '/phantom',
    tokens: ctx.opaqueToken ? [ctx.opaqueToken] : [],
    skip: ctx.opaqueToken ? null : ctx.authServerProblem ?? 'no authorization server',
  });
  list.push({ name: 'JWT ES256 reused + access log on', path: '/jwt', tokens: [ctx.tokens.ES256[0]], gateway: { accessLog: true } });
  list.push({
    name: 'HTTPS listener, public route',
    path: '/public',
    protocol: 'https',
    skip: ctx.tls ? null : ctx.tlsProblem,
  });
  list.push({
    name: 'HTTPS listener, JWT ES256 reused',
    path: '/jwt',
    protocol: 'https',
    tokens: [ctx.tokens.ES256[0]],
    skip: ctx.tls ? null : ctx.tlsProblem,
  });
  // Latency at one offered load, below every row's capacity: the gateway's added latency as a
  // client sees it, not each process's own saturation (where p99 mostly measures throughput).
  const paced = (name, extra) => ({ name: `${PACED}: ${name}`, rate: PACED_RATE, skip: tools.wrk ? null : 'no wrk (Debian: wrk): autocannon cannot pace', ...extra });
  list.push(paced('public route', { path: '/public' }));
  list.push(paced('JWT ES256, one token reused', { path: '/jwt', tokens: [ctx.tokens.ES256[0]] }));
  for (const alg of ALGS) list.push(paced(`JWT ${alg}, cold (no token cache)`, { path: '/jwt', tokens: [ctx.tokens[alg][0]], gateway: { tokenCache: false } }));
  list.push({
    name: 'HTTP/2 (h2load), public route',
    path: '/public',
    protocol: 'h2',
    skip: !tools.h2load ? 'no h2load (Debian: nghttp2-client)' : ctx.tls ? null : ctx.tlsProblem,
  });
  return list;
}

async function makeCertificate(dir) {
  const devCert = path.join(ROOT, 'dist/demo/dev-cert.js');
  if (existsSync(devCert)) {
    try {
      const { createSelfSignedCertificate } = await import(devCert);
      const made = await createSelfSignedCertificate({ hosts: ['127.0.0.1', 'localhost'] });
      const cert = path.join(dir, 'cert.pem');
      const key = path.join(dir, 'key.pem');
      writeFileSync(cert, made.certPem);
      writeFileSync(key, made.keyPem, { mode: 0o600 });
      return { cert, key };
    } catch {
      /* fall through to openssl */
    }
  }
  if (!tools.openssl) throw new Error('no certificate tooling (dist/demo/dev-cert.js, or Debian: openssl)');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync(
    tools.openssl,
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { cert, key };
}

async function startRedis(dir) {
  const port = await freePort();
  const child = start(1, tools.redis, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = new net.Socket();
      s.once('error', () => resolve(false));
      s.connect(port, '127.0.0.1', () => {
        s.write('PING\r\n');
        s.once('data', (d) => {
          s.destroy();
          resolve(String(d).startsWith('+PONG'));
        });
      });
    });
    if (ok) return { url: `redis://127.0.0.1:${port}`, child };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start:\n${child.output}`);
    await sleep(50);
  }
}

async function startAuthServer() {
  const file = path.join(ROOT, 'dist/demo/authorization-server.js');
  const { startAuthorizationServer, demoClients, DEMO_CLIENT_SECRETS } = await import(file);
  const as = await startAuthorizationServer({ audience: AUDIENCE, clients: demoClients('http://127.0.0.1/callback'), accessTokenTtl: 3600 });
  const token = await as.clientCredentialsToken('demo-opaque', DEMO_CLIENT_SECRETS['demo-opaque'], 'orders:read');
  return { as, token, gatewaySecret: DEMO_CLIENT_SECRETS.gateway };
}

async function startGatehouse(dir, configText) {
  const port = Number(/port: (\d+)/.exec(configText)[1]);
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, configText);
  const profileDir = path.join(dir, `profile-${port}`);
  const flags = opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  // One process started like a cluster worker: with the V8 flags the primary gives its workers.
  const child = start(0, process.execPath, [...flags, ...RUNTIME_FLAGS, path.join(GATEHOUSE_ROOT, 'bin/gatehouse.js'), 'start', '--config', file, '--workers', '1']);
  return { child, port, profileDir };
}

/**
 * The hottest functions of a V8 CPU profile, as printable lines: self time, and the time of the
 * function and its callees ("total"), both in µs per request served during the profile.
 */
function summarizeProfile(profileDir, served, fromMicros, top = Number(process.env.BENCH_PROFILE_TOP) || 25) {
  let files;
  try {
    files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return '  (no profile written)\n';
  }
  if (files.length === 0) return '  (no profile written)\n';
  const profile = JSON.parse(readFileSync(path.join(profileDir, files[0]), 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (f) => `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src|dist|lib)\//, '$1/')}:${f.lineNumber + 1}`;
  const self = new Map();
  const inclusive = new Map();
  const dt = profile.timeDeltas;
  const ownCode = `file://${GATEHOUSE_ROOT}/dist/`;
  const own = new Set();
  let underOwn = 0;
  let total = 0;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const t = dt[i] ?? 0;
    at += t;
    if (at < fromMicros) continue; // start-up: not what is measured
    total += t;
    const key = name(byId.get(profile.samples[i]).callFrame);
    self.set(key, (self.get(key) ?? 0) + t);
    if (key.startsWith('(idle)')) continue;
    const seen = new Set();
    let mine = false;
    for (let id = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id).callFrame;
      const k = name(frame);
      if (frame.url.startsWith(ownCode)) {
        own.add(k);
        mine = true;
      }
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + t);
    }
    if (mine) underOwn += t;
  }
  const idle = self.get('(idle) :0') ?? 0;
  self.delete('(idle) :0');
  // Per-function µs per request, for comparing two profiles (kept with --profile).
  writeFileSync(path.join(profileDir, 'summary.json'), JSON.stringify({ served, self: Object.fromEntries([...self].map(([k, v]) => [k, v / served])) }));
  const per = (v) => (v / served).toFixed(2).padStart(6);
  let out = `  busy ${(((total - idle) / total) * 100).toFixed(0)}% of the profiled time, ${served} requests; µs per request:\n    self  total\n`;
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) out += `  ${per(v)} ${per(inclusive.get(k) ?? v)}  ${k}\n`;
  out += `  under gatehouse code (its functions and all they call): ${per(underOwn)} µs per request; by function (total):\n`;
  for (const [k, v] of [...inclusive].filter(([k]) => own.has(k)).sort((a, b) => b[1] - a[1]).slice(0, 15)) out += `         ${per(v)}  ${k}\n`;
  return out;
}

/**
 * The issue's C peer: HAProxy (one thread) checking alg, iss, aud, exp and the signature with
 * `jwt_verify` on every request (HAProxy has no verification cache), then passing through.
 */
async function startHaproxy(dir, upstreamUrl, issuer, alg) {
  const port = await freePort();
  const keyFile = path.join(dir, `haproxy-${alg}.pem`);
  writeFileSync(keyFile, issuer.publicKeyPem(alg));
  const conf = path.join(dir, `haproxy-${alg}.cfg`);
  const upstream = new URL(upstreamUrl);
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:${port}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str ${alg} }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('$.iss') -m str ${issuer.issuer} }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('$.aud') -m str ${AUDIENCE} }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"${keyFile}") -m int 1 }
  default_backend api
backend api
  http-reuse always
  server api ${upstream.hostname}:${upstream.port}
`,
  );
  const child = start(0, tools.haproxy, ['-f', conf, '-db']);
  await waitReady(`http://127.0.0.1:${port}/`, child, 'haproxy');
  return { child, port };
}

async function startBaseline(dir, upstreamUrl, extra = [], profile = opts.profile) {
  const port = await freePort();
  const profileDir = path.join(dir, `profile-${port}`);
  const flags = profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child = start(0, process.execPath, [...flags, ...RUNTIME_FLAGS, path.join(ROOT, 'bench/baseline.js'), String(port), upstreamUrl, ...extra]);
  await waitReady(`http://127.0.0.1:${port}/`, child, 'baseline');
  return { child, port, profileDir };
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = {
  int: (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—'),
  ms: (n) => (Number.isFinite(n) ? n.toFixed(2) : '—'),
  one: (n) => (Number.isFinite(n) ? n.toFixed(1) : '—'),
  ratio: (n) => (Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : '—'),
};

function tableRows(rows, baselineRps) {
  return rows.map((r) => {
    if (r.skipped || r.error) return [r.name, '—', '—', '—', '—', '—', '—', '—', r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.error}`];
    // Paired rows compare with the baseline measured next to them; the others with the mean baseline.
    const rpsRatio = r.base ? r.rps / r.base.rps : r.rps / baselineRps;
    return [
      r.name,
      fmt.int(r.rps),
      fmt.ms(r.p50),
      fmt.ms(r.p99),
      fmt.int(r.cpuPerReq),
      fmt.one(r.rss),
      r.base ? fmt.int(r.base.cpuPerReq) : '—',
      r.base ? fmt.ratio(Number.isFinite(r.base.capacity) ? r.base.capacity : r.base.cpuPerReq / r.cpuPerReq) : '—',
      r.errors > 0 ? `${fmt.ratio(rpsRatio)} (${r.errors} errors)` : fmt.ratio(rpsRatio),
    ];
  });
}

const HEADER = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'RSS MiB', 'baseline µs/req (paired)', 'capacity vs baseline', 'req/s vs baseline'];
const LEFT = new Set([0, 8]);

function printTable(rows) {
  const all = [HEADER, ...rows];
  const widths = HEADER.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (LEFT.has(i) ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  let out = `${line(HEADER)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`;
  for (const r of rows) out += `${line(r)}\n`;
  return out;
}

/**
 * A row's `key` (p50, p99) as the median over its measured runs, or the reported run's when it
 * has one run: one VM stall in the run that happens to have the median req/s must not decide it.
 */
function runsMedian(r, key) {
  const all = (r.runs ?? []).map((x) => x[key]).filter(Number.isFinite).sort((x, y) => x - y);
  return all.length > 0 ? all[Math.floor(all.length / 2)] : r[key];
}

/**
 * The paced rows next to their paired baseline at the same rate: the latency gatehouse adds as a
 * client sees it (p99 as the median over the runs on both sides).
 */
function pacedLines(rows, markdown) {
  const paced = rows.filter((r) => r.name.startsWith('paced ') && !r.skipped && !r.error && r.base);
  if (paced.length === 0) return '';
  const lines = paced.map((r) => {
    const p50 = runsMedian(r, 'p50');
    const p99 = runsMedian(r, 'p99');
    return [r.name, `${fmt.ms(p50)} vs ${fmt.ms(r.base.p50)}`, `${fmt.ms(p99)} vs ${fmt.ms(r.base.p99)}`, `${(p99 / r.base.p99).toFixed(2)}×`, fmt.ms(Math.abs(p50 - r.base.p50) < 0.005 ? 0 : p50 - r.base.p50)];
  });
  const head = ['paced row', 'p50 ms (vs baseline)', 'p99 ms (vs baseline)', 'p99 vs baseline', 'added at p50, ms'];
  if (markdown) return `| ${head.join(' | ')} |\n|---|--:|--:|--:|--:|\n${lines.map((l) => `| ${l.join(' | ')} |`).join('\n')}\n`;
  const all = [head, ...lines];
  const w = head.map((_, i) => Math.max(...all.map((l) => l[i].length)));
  return all.map((l) => l.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')).join('\n') + '\n';
}

function markdownTable(rows) {
  let out = `| ${HEADER.join(' | ')} |\n|${HEADER.map((_, i) => (LEFT.has(i) ? '---' : '--:')).join('|')}|\n`;
  for (const r of rows) out += `| ${r.join(' | ')} |\n`;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Targets

/**
 * The issue's targets, evaluated on this run's rows (skipped when a needed row is missing):
 * `lines` of [target, measured, met], and `basis`, what the capacities were measured against.
 */
function evaluateTargets(rows) {
  const ok = (r) => r && !r.skipped && !r.error && Number.isFinite(r.cpuPerReq);
  const row = (name) => rows.find((r) => r.name === name && ok(r));
  const bases = rows.filter((r) => r.name.startsWith('baseline') && ok(r));
  if (bases.length === 0) return { basis: null, lines: [] };
  const base = {
    rps: bases.reduce((a, r) => a + r.rps, 0) / bases.length,
    cpu: bases.reduce((a, r) => a + r.cpuPerReq, 0) / bases.length,
    p99: bases.reduce((a, r) => a + r.p99, 0) / bases.length,
  };
  const pct = (x) => `${(x * 100).toFixed(0)}%`;
  const out = [];
  // A row's CPU per request in units of a baseline. Two ways, chosen per run:
  // - a steady run (the paired baselines' interquartile range within 10% of their median): one
  //   baseline for the whole run, the median of the paired ones. Every fresh process lands in
  //   its own JIT state, and a single baseline process can cost 15% more than the others
  //   for its whole life; a per-pair ratio then carries that process's luck into its row.
  // - a drifting run: the paired ratio, so that the machine's drift between measurements
  //   cancels.
  // (Paced rows are not at saturation: their CPU per request, and their baselines', is another figure.)
  const pairedCpus = rows
    .filter((r) => ok(r) && r.base && Number.isFinite(r.base.cpuPerReq) && !r.name.startsWith('paced '))
    .map((r) => r.base.cpuPerReq)
    .sort((a, b) => a - b);
  const quantile = (q) => pairedCpus[Math.round(q * (pairedCpus.length - 1))];
  const runBase = pairedCpus.length > 0 ? quantile(0.5) : base.cpu;
  const steady = pairedCpus.length >= 4 && (quantile(0.75) - quantile(0.25)) / runBase <= 0.1;
  const pairedRel = (r) => (r.base && Number.isFinite(r.base.capacity) ? 1 / r.base.capacity : r.cpuPerReq / (r.base ? r.base.cpuPerReq : base.cpu));
  const rel = steady ? (r) => r.cpuPerReq / runBase : pairedRel;
  const basis = steady
    ? `steady run: capacities against the run's baseline, ${runBase.toFixed(0)} µs/req (median of the paired baselines, interquartile ${quantile(0.25).toFixed(0)}–${quantile(0.75).toFixed(0)})`
    : pairedCpus.length > 0
      ? `drifting run (paired baselines ${quantile(0.25).toFixed(0)}–${quantile(0.75).toFixed(0)} µs/req interquartile): capacities per pair, and a target is met only if the reading against the run's median baseline (${runBase.toFixed(0)} µs/req) meets it too`
      : 'no paired baselines: capacities against the mean of the baseline rows';
  const vsBase = (label, name, goal) => {
    const r = row(name);
    if (!r) return;
    const capacity = 1 / rel(r);
    const rps = r.base ? r.rps / r.base.rps : r.rps / base.rps;
    // Both readings: the one that decides (see above) first, the other after it.
    const other = !r.base ? '' : steady ? `, paired ${pct(1 / pairedRel(r))}` : `, against the run's median baseline ${pct(runBase / r.cpuPerReq)}`;
    out.push([label, `capacity ${pct(capacity)}${other}, req/s ${pct(rps)}`, capacity >= goal && (steady || runBase / r.cpuPerReq >= goal)]);
  };
  vsBase('public route ≥ 95% of the baseline', 'public route', 0.95);
  for (const alg of ALGS) {
    vsBase(`JWT ${alg} warm (one token) ≥ 90%`, `JWT ${alg}, one token reused`, 0.9);
    vsBase(`JWT ${alg} warm (1000 tokens) ≥ 90%`, `JWT ${alg}, 1000 rotating tokens`, 0.9);
  }
  const times = (a, b) => rel(a) / rel(b); // how many times b's CPU per request a costs
  // In a drifting run a comparison of two rows must also hold on their plain CPU per request
  // (both against the run's median baseline): one row's lucky or unlucky pair must not decide it.
  const direct = (a, b) => a.cpuPerReq / b.cpuPerReq;
  const alsoDirect = (a, b) => (steady ? '' : `; ${direct(a, b).toFixed(2)}× on CPU/req alone`);
  // The paired baselines are only part of the comparison when the run drifts.
  const cpus = (a, b) =>
    `CPU/req ${Math.round(a.cpuPerReq)} vs ${Math.round(b.cpuPerReq)} µs${!steady && a.base && b.base ? `, baselines ${Math.round(a.base.cpuPerReq)} / ${Math.round(b.base.cpuPerReq)}` : ''}`;
  // Not one of the issue's targets: the same bound against a floor that does the same mandatory work.
  const publicRow = row('public route');
  const sameHeaders = row('reference: pass-through + the same headers');
  if (publicRow && sameHeaders) {
    out.push([
      'public route ≥ 95% of the pass-through sending the same headers (like for like; not an issue target)',
      `capacity ${pct(times(sameHeaders, publicRow))} of it (${cpus(publicRow, sameHeaders)})${alsoDirect(sameHeaders, publicRow)}`,
      times(sameHeaders, publicRow) >= 0.95 && (steady || direct(sameHeaders, publicRow) >= 0.95),
    ]);
  }
  for (const alg of ALGS) {
    const warm = row(`JWT ${alg}, one token reused`);
    const jose = row(`reference: jose jwtVerify, ${alg}, no cache`);
    if (warm && jose) out.push([`JWT ${alg} warm ≥ 2× jose without cache`, `${times(jose, warm).toFixed(2)}× (${cpus(warm, jose)})${alsoDirect(jose, warm)}`, times(jose, warm) >= 2 && (steady || direct(jose, warm) >= 2)]);
    const haproxy = row(`peer: HAProxy jwt_verify, ${alg === 'EdDSA' ? 'ES256' : alg} (no cache)`);
    if (warm && haproxy && alg !== 'RS256') {
      out.push([`JWT ${alg} warm ahead of HAProxy jwt_verify${alg === 'EdDSA' ? ' (ES256; HAProxy has no EdDSA)' : ''}`, `${times(haproxy, warm).toFixed(2)}× (${cpus(warm, haproxy)})${alsoDirect(haproxy, warm)}`, rel(warm) <= rel(haproxy) && (steady || direct(haproxy, warm) >= 1)]);
    }
  }
  for (const alg of ALGS) {
    const cold = row(`JWT ${alg}, cold (no token cache)`);
    const sync = row(`reference: sync crypto.verify, ${alg}, no cache`);
    const jose = row(`reference: jose jwtVerify, ${alg}, no cache`);
    if (cold && sync) out.push([`JWT ${alg} cold ≥ the sync crypto.verify reference`, `capacity ${pct(times(sync, cold))} of it (${cpus(cold, sync)})${alsoDirect(sync, cold)}`, rel(cold) <= rel(sync) && (steady || direct(sync, cold) >= 1)]);
    if (cold && jose) out.push([`JWT ${alg} cold ≥ 1.4× plain jose`, `${times(jose, cold).toFixed(2)}×${alsoDirect(jose, cold)}`, times(jose, cold) >= 1.4 && (steady || direct(jose, cold) >= 1.4)]);
  }
  const gh = rows.filter((r) => ok(r) && !r.name.startsWith('baseline') && !r.name.startsWith('reference') && !r.name.startsWith('peer'));
  const pacedRows = gh.filter((r) => r.name.startsWith('paced '));
  const http1 = gh.filter((r) => !/HTTPS|HTTP\/2/.test(r.name) && !r.name.startsWith('paced '));
  // Both sides as the median over their runs (the paired baseline's p99 already is).
  const p99Of = (r) => (r.base ? r.base.p99 : base.p99);
  const ownP99 = (r) => runsMedian(r, 'p99');
  const median = (r) => ((r.runs?.length ?? 0) > 1 ? ', medians over the runs' : '');
  const p99Target = (label, list) => {
    if (!list.length) return;
    const worst = list.reduce((a, r) => (ownP99(r) / p99Of(r) > ownP99(a) / p99Of(a) ? r : a));
    out.push([label, `worst ${ownP99(worst).toFixed(2)} ms (${worst.name}) vs ${p99Of(worst).toFixed(2)} ms${median(worst)}`, ownP99(worst) <= 1.5 * p99Of(worst)]);
  };
  p99Target('p99 within 1.5× the baseline p99, each at its own saturation (HTTP/1.1 scenarios)', http1);
  // Paced rows have a paired baseline at the same rate, so p99Of is that baseline's.
  const pacedLabel = pacedRows[0]?.name.split(':')[0].replace(/^paced /, '') ?? '';
  p99Target(`p99 within 1.5× the baseline p99, both at a fixed ${pacedLabel}`, pacedRows.filter((r) => r.base));
  if (gh.length) {
    const worst = gh.reduce((a, r) => (r.rss > a.rss ? r : a));
    out.push(['RSS under load < 150 MiB per worker', `max ${worst.rss.toFixed(0)} MiB (${worst.name})`, worst.rss < 150]);
  }
  const jwt = row('JWT ES256, one token reused');
  const mem = row('JWT ES256 + scope + memory rate limit');
  const redis = row('JWT ES256 + scope + Redis rate limit');
  const phantom = row('phantom token, warm cache');
  // Limits and phantom tokens are measured against the same route without them (same scope check).
  const scoped = row('JWT ES256 + scope') ?? jwt;
  const cost = (r) => 1 - rel(scoped) / rel(r);
  // The CPU per request of the two rows side by side (no baseline in between), as a second reading.
  const extra = (r) => r.cpuPerReq / scoped.cpuPerReq - 1;
  const side = (r) => `; CPU/req ${r.cpuPerReq.toFixed(1)} vs ${scoped.cpuPerReq.toFixed(1)} µs, ${extra(r) >= 0 ? '+' : ''}${pct(extra(r))}`;
  // (In a drifting run the plain CPU comparison must hold too, as above.)
  if (jwt && mem) out.push(['in-memory rate limit costs < 5% vs the same route without it (issue 5)', `${pct(cost(mem))} of capacity${side(mem)}`, cost(mem) < 0.05 && (steady || extra(mem) < 0.05 / 0.95)]);
  if (jwt && redis) out.push(['Redis rate limit costs < 25% vs the same route without it (issue 5)', `${pct(cost(redis))} of capacity${side(redis)}`, cost(redis) < 0.25 && (steady || extra(redis) < 0.25 / 0.75)]);
  if (jwt && phantom) out.push(['phantom token (warm) within 10% of the JWT route with the same scope (issue 6)', `${pct(cost(phantom))} below${side(phantom)}`, cost(phantom) <= 0.1 && (steady || extra(phantom) <= 0.1 / 0.9)]);
  return { basis, lines: out };
}

function targetLines({ basis, lines }, markdown) {
  const head = basis ? `${basis}\n\n` : '';
  if (markdown) return `${head}| target | measured | met |\n|---|---|---|\n${lines.map(([t, m, met]) => `| ${t} | ${m} | ${met ? 'yes' : '**no**'} |`).join('\n')}\n`;
  const w = Math.max(...lines.map(([t]) => t.length));
  return head + lines.map(([t, m, met]) => `${met ? 'met    ' : 'NOT met'}  ${t.padEnd(w)}  ${m}`).join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  await acquireLock();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-'));
  workDir = dir;
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no', 'src', 'bench'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  for (const m of missing) process.stderr.write(`bench: ${m}\n`);
  process.stderr.write(
    `bench: ${DURATION}s per scenario after ${WARMUP}s warm-up, ${CONNECTIONS} connections, keep-alive; ` +
      `driver ${tools.wrk ? 'wrk' : 'autocannon'}; ${PIN ? 'process under test on core 0, the rest on core 1' : 'not pinned'}\n`,
  );

  const loadBefore = (await import('node:os')).loadavg()[0];
  if (loadBefore > 0.5) process.stderr.write(`bench: load average ${loadBefore.toFixed(2)} before start: other work shares these cores, figures will be noisy\n`);
  const upstream = await startUpstream(dir);
  const issuer = await startIssuer();
  const tokens = {};
  for (const alg of ALGS) {
    tokens[alg] = [];
    for (let i = 0; i < 1000; i++) tokens[alg].push(await issuer.mint(alg, 'bench-user', i));
  }

  const ctx = { tokens, redisUrl: null, opaqueToken: null, tls: null, tlsProblem: null, authServerProblem: null };
  const wanted = (name) => !ONLY || ONLY.test(name) || /baseline/.test(name);
  const plan = scenarios({ ...ctx, redisUrl: 'x', opaqueToken: 'x', tls: {} }).filter((s) => wanted(s.name));

  let redis = null;
  if (tools.redis && plan.some((s) => /Redis/.test(s.name))) {
    try {
      redis = await startRedis(dir);
      ctx.redisUrl = redis.url;
    } catch (err) {
      process.stderr.write(`bench: ${err.message}\n`);
    }
  }
  let auth = null;
  if (plan.some((s) => /phantom/.test(s.name))) {
    try {
      auth = await startAuthServer();
      ctx.opaqueToken = auth.token;
    } catch (err) {
      ctx.authServerProblem = `authorization server: ${err.message.split('\n')[0]}`;
    }
  }
  if (plan.some((s) => s.protocol)) {
    try {
      ctx.tls = await makeCertificate(dir);
    } catch (err) {
      ctx.tlsProblem = err.message;
    }
  }

  const rows = [];
  const report = (row) => {
    rows.push(row);
    const state = row.skipped ? `skipped (${row.skipped})` : row.error ? `FAILED (${row.error})` : `${fmt.int(row.rps)} req/s, p99 ${fmt.ms(row.p99)} ms, ${fmt.int(row.cpuPerReq)} µs/req`;
    process.stderr.write(`bench: ${row.name}: ${state}\n`);
  };

  // The baseline first (and again at the end, to see drift); ratios use the mean of both.
  const runBaseline = async (name) => {
    const b = await startBaseline(dir, upstream.url);
    let served = 0;
    let from = 0;
    try {
      const result = await measure(b.child.pid, { url: `http://127.0.0.1:${b.port}/public` }, dir);
      served = result.served;
      from = result.from;
      report({ name, ...result });
    } finally {
      await stop(b.child);
      if (opts.profile) process.stderr.write(`bench: profile of ${name}:\n${summarizeProfile(b.profileDir, served, from)}`);
    }
  };
  if (!opts['no-baseline']) await runBaseline('baseline: node:http + undici Pool');
  // The baseline again, measured next to every scenario (see measure()). Every scenario gets a
  // fresh baseline process, as it gets a fresh gatehouse: a baseline that had served all the
  // scenarios before carries their JIT feedback (other headers, other tokens) and costs more per
  // request than a fresh one, which flattered the rows measured late in a run.
  let paired = null;
  if (!opts['no-baseline'] && !opts['no-pairing']) {
    paired = { child: null, pid: 0, target: null };
    paired.restart = async (why = '') => {
      if (paired.child) {
        if (why) {
          const state = paired.child.exitCode !== null ? `exited (${paired.child.exitCode})` : `stopped answering (${why})`;
          process.stderr.write(`bench: the paired baseline ${state}; starting a new one. Its output:\n${paired.child.output.slice(-2000)}\n`);
        }
        await stop(paired.child);
      }
      const b = await startBaseline(dir, upstream.url, [], false);
      Object.assign(paired, { child: b.child, pid: b.child.pid, target: { url: `http://127.0.0.1:${b.port}/public` } });
    };
  }

  for (const s of scenarios(ctx).filter((x) => wanted(x.name))) {
    if (s.skip) {
      report({ name: s.name, skipped: s.skip });
      continue;
    }
    if (s.reference) {
      const ref =
        s.reference === 'haproxy'
          ? await startHaproxy(dir, upstream.url, issuer, s.alg)
          : await startBaseline(dir, upstream.url, [s.reference, issuer.jwksUri, issuer.issuer, AUDIENCE]);
      try {
        const url = `http://127.0.0.1:${ref.port}${s.path}`;
        const answer = await probe(url, s.tokens ? { authorization: `Bearer ${s.tokens[0]}` } : {});
        if (answer.status !== 200) throw new Error(`probe answered ${answer.status}`);
        if (s.tokens) {
          const bad = await probe(url, { authorization: `Bearer ${s.tokens[0].slice(0, -4)}AAAA` });
          if (bad.status !== 401) throw new Error(`a forged token was answered ${bad.status}, not 401`);
        }
        report({ name: s.name, ...(await measure(ref.child.pid, { url, tokens: s.tokens }, dir, paired)) });
      } catch (err) {
        report({ name: s.name, error: err.message.split('\n')[0] });
      } finally {
        await stop(ref.child);
      }
      continue;
    }
    const port = await freePort();
    const cfg = gatewayConfig({
      port,
      upstreamUrl: upstream.url,
      issuer,
      tls: s.protocol ? ctx.tls : null,
      http2: s.protocol === 'h2',
      accessLog: s.gateway?.accessLog ?? false,
      tokenCache: s.gateway?.tokenCache ?? true,
      redisUrl: ctx.redisUrl,
      authServer: auth ? { issuer: auth.as.issuer, audience: AUDIENCE, gatewaySecret: auth.gatewaySecret } : null,
    });
    const gw = await startGatehouse(dir, cfg);
    let served = 0;
    let from = 0;
    const scheme = s.protocol ? 'https' : 'http';
    const url = `${scheme}://127.0.0.1:${gw.port}${s.path}`;
    const headers = { ...(s.headers ?? {}) };
    const check = { ...headers };
    if (s.tokens?.length) check.authorization = `Bearer ${s.tokens[0]}`;
    try {
      await waitReady(`${scheme}://127.0.0.1:${gw.port}/public`, gw.child, 'gatehouse');
      let answer = await probe(url, check);
      // Keys (JWKS, discovery) arrive just after start: retry a 503 for a moment.
      for (let i = 0; i < 50 && answer.status === 503; i++) {
        await sleep(100);
        answer = await probe(url, check);
      }
      if (answer.status !== 200) throw new Error(`probe answered ${answer.status}: ${answer.body.slice(0, 300)}`);
      const result = await measure(gw.child.pid, { url, headers, tokens: s.tokens, protocol: s.protocol, rate: s.rate }, dir, paired);
      served = result.served;
      from = result.from;
      report({ name: s.name, ...result });
    } catch (err) {
      report({ name: s.name, error: err.message.split('\n')[0], detail: err.message });
      if (process.env.BENCH_DEBUG) process.stderr.write(`${err.message}\n${gw.child.output}\n`);
    } finally {
      await stop(gw.child);
      if (opts.profile) process.stderr.write(`bench: profile of ${s.name}:\n${summarizeProfile(gw.profileDir, served, from)}`);
    }
  }

  await stop(paired?.child);
  if (!opts['no-baseline']) await runBaseline('baseline (again, for drift)');

  await stop(redis?.child);
  await auth?.as.stop().catch(() => undefined);
  await issuer.close();
  await stop(upstream.child);
  await insecureAgent.close();

  const baselines = rows.filter((r) => r.name.startsWith('baseline') && Number.isFinite(r.rps));
  const baselineRps = baselines.reduce((a, r) => a + r.rps, 0) / baselines.length;
  const baselineP99 = baselines.reduce((a, r) => a + r.p99, 0) / baselines.length;
  const shown = tableRows(rows, baselineRps);
  const title = `gatehouse bench — commit ${commit}${dirty ? ' (+ local changes)' : ''}, node ${process.version}${RUNTIME_FLAGS.length > 0 ? ` ${RUNTIME_FLAGS.join(' ')}` : ''}, ${CORES} cores, upstream ${upstream.kind}, ${tools.wrk ? 'wrk' : 'autocannon'}, ${CONNECTIONS} connections, ${DURATION}s per scenario`;
  process.stdout.write(`\n${title}\n\n${printTable(shown)}\n`);
  if (opts.markdown) process.stdout.write(`\n${markdownTable(shown)}\n`);
  const pacedText = pacedLines(rows, opts.markdown);
  if (pacedText) process.stdout.write(`\nLatency at a fixed ${PACED_RATE.toLocaleString('en-US')} req/s (${CONNECTIONS} connections, Poisson arrivals from wrk), against the paired baseline at the same rate:\n\n${pacedText}`);
  const targets = evaluateTargets(rows);
  if (targets.lines.length > 0) {
    process.stdout.write(`\nTargets (issue 8; issues 5 and 6 for limits and phantom tokens). "capacity" = req/s on a saturated core\n= 1 / CPU per request, the steady figure; "req/s" = measured throughput ratio (noisier):\n\n`);
    process.stdout.write(targetLines(targets, opts.markdown));
  }

  const resultsDir = path.join(ROOT, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = {
    date: new Date().toISOString(),
    commit,
    dirty,
    node: process.version,
    nodeFlags: RUNTIME_FLAGS,
    cores: CORES,
    pinned: PIN,
    upstream: upstream.kind,
    driver: tools.wrk ? 'wrk' : 'autocannon',
    connections: CONNECTIONS,
    durationSeconds: DURATION,
    repeat: REPEAT,
    loadAverage: loadBefore,
    warmupSeconds: WARMUP,
    baseline: { rps: baselineRps, p99: baselineP99 },
    scenarios: rows.map((r) => ({
      name: r.name,
      skipped: r.skipped ?? undefined,
      error: r.error ?? undefined,
      rps: r.rps,
      p50Ms: r.p50,
      p99Ms: r.p99,
      cpuMicrosPerRequest: r.cpuPerReq,
      // read + write system calls per request (/proc/PID/io), where the kernel reports them
      syscallsPerRequest: Number.isFinite(r.syscallsPerReq) ? r.syscallsPerReq : undefined,
      rssMiB: r.rss,
      requests: r.requests,
      errors: r.errors,
      ratioToBaseline: r.base ? r.rps / r.base.rps : r.rps / baselineRps,
      pairedBaseline: r.base ? { rps: r.base.rps, cpuMicrosPerRequest: r.base.cpuPerReq, syscallsPerRequest: Number.isFinite(r.base.syscallsPerReq) ? r.base.syscallsPerReq : undefined, p50Ms: r.base.p50, p99Ms: r.base.p99, capacity: r.base.capacity } : undefined,
      runs: r.runs,
      p99RatioToBaseline: r.p99 / baselineP99,
    })),
  };
  const out = path.join(resultsDir, `${stamp}.json`);
  writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
  process.stderr.write(`bench: results written to ${path.relative(ROOT, out)}\n`);
  if (opts.profile) process.stderr.write(`bench: CPU profiles kept in ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
}

/** `--report FILE`: the table and targets of a saved run. */
function reportSaved(file) {
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  const rows = saved.scenarios.map((r) => ({
    name: r.name,
    skipped: r.skipped,
    error: r.error,
    rps: r.rps,
    p50: r.p50Ms,
    p99: r.p99Ms,
    cpuPerReq: r.cpuMicrosPerRequest,
    rss: r.rssMiB,
    errors: r.errors ?? 0,
    runs: r.runs,
    base: r.pairedBaseline ? { rps: r.pairedBaseline.rps, cpuPerReq: r.pairedBaseline.cpuMicrosPerRequest, p50: r.pairedBaseline.p50Ms, p99: r.pairedBaseline.p99Ms, capacity: r.pairedBaseline.capacity ?? NaN } : undefined,
  }));
  const baselines = rows.filter((r) => r.name.startsWith('baseline') && Number.isFinite(r.rps));
  const baselineRps = baselines.reduce((a, r) => a + r.rps, 0) / baselines.length;
  const shown = tableRows(rows, baselineRps);
  process.stdout.write(`gatehouse bench — commit ${saved.commit}${saved.dirty ? ' (+ local changes)' : ''}, ${saved.date}, node ${saved.node}, ${saved.cores} cores, upstream ${saved.upstream}, ${saved.driver}, ${saved.connections} connections, ${saved.durationSeconds}s × ${saved.repeat ?? 1} per scenario, load average before start ${saved.loadAverage?.toFixed?.(2) ?? '?'}\n\n`);
  process.stdout.write(opts.markdown ? markdownTable(shown) : printTable(shown));
  const pacedText = pacedLines(rows, opts.markdown);
  if (pacedText) process.stdout.write(`\nLatency at a fixed rate, against the paired baseline at the same rate:\n\n${pacedText}`);
  const targets = evaluateTargets(rows);
  process.stdout.write(`\n${targetLines(targets, opts.markdown)}`);
}

if (opts.report) {
  reportSaved(opts.report);
  process.exit(0);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    process.exit(1);
  },
);
