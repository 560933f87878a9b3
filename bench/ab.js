#!/usr/bin/env node
// Interleaved A/B of two gatehouse builds (issue 8): "measure before and after each change".
//
//   node bench/ab.js --a /path/to/old/checkout [--b .] [--path /public|/jwt] [--alg RS256]
//                    [--cold] [--tokens N] [--pairs 1] [--rounds 12] [--seconds 2] [--connections 50]
//   node bench/ab.js --a baseline [--b .]     # B against the bare pass-through (bench/baseline.js)
//   node bench/ab.js --a sync --path /jwt --cold --alg RS256   # B cold against the sync reference
//   node bench/ab.js --a . --b-flags=--single-threaded-gc  # one build, B with other node flags
//   node bench/ab.js --a baseline --path /jwt --tokens 1000   # 1000 tokens in turn, as the bench's rotating rows
//
// `npm run bench` measures one build against the baseline; on a machine whose speed drifts by
// tens of percent within minutes, a change of one or two percent cannot be read from two such
// runs. Here both builds run at once, pinned to the same core (core 0), with the same config,
// and wrk (core 1) drives them in turn for a few seconds each, A B B A A B …, so drift hits both
// alike. Each turn reads the CPU time the process spent per request (/proc/PID/stat); the
// result is the median of the per-round ratios B/A, with its interquartile range. `--pairs N`
// does it all N times with fresh processes: one process of a build can run a few percent faster
// or slower than another for its whole life, which no number of rounds averages out.
//
// Each round also reads wrk's p99 latency, for tail-latency changes (a V8 flag, a GC setting);
// it is printed as the median p99 of each build, which a single full collection can move.
//
// Each build must be built (`npx tsc -p tsconfig.build.json` in its checkout). Uses wrk and
// nginx (Debian: wrk, nginx-light) and taskset when present, like bench/run.js.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { abGatehouseConfig, baselineArgs, cpuMicros, gatehouseArgs, freePort, nginxPath, parseOptions, processes, requirePositive, startIssuer, targetOptions, tokenScript, waitReady, which, gatewayV8Flags, writeNginxConfig } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const USAGE =
  'usage: node bench/ab.js --a OLD_CHECKOUT|baseline|sync|jose|headers [--b NEW_CHECKOUT] [--path /public|/jwt] [--alg RS256|ES256|EdDSA] [--cold] [--tokens N] [--pairs N] [--rounds N] [--seconds S] [--warmup S] [--connections N] [--a-flags="--node-flag …"] [--b-flags="…"] [--guards]';
const opts = parseOptions(
  'bench/ab.js',
  {
    a: { type: 'string' },
    ...targetOptions(ROOT),
    rounds: { type: 'string', default: '12' },
    pairs: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '8' },
    connections: { type: 'string', default: '50' },
    'a-flags': { type: 'string', default: '' },
    'b-flags': { type: 'string', default: '' },
    guards: { type: 'boolean', default: false },
  },
  USAGE,
);
if (!opts.a) {
  process.stderr.write(`bench/ab.js: --a is required\n${USAGE}\n`);
  process.exit(2);
}
requirePositive('bench/ab.js', [['--rounds', opts.rounds], ['--pairs', opts.pairs], ['--seconds', opts.seconds], ['--tokens', opts.tokens], ['--warmup', opts.warmup], ['--connections', opts.connections]]);
const WRK = which('wrk');
const NGINX = nginxPath();
const TASKSET = which('taskset');
if (!WRK || !NGINX) {
  process.stderr.write('bench/ab.js needs wrk and nginx (Debian: wrk, nginx-light)\n');
  process.exit(2);
}
// `--a baseline`: the bench's bare pass-through (bench/baseline.js) as A, to read how far B is
// from the Node floor with the same interleaving (on /public; with /jwt the token just passes).
// `--a sync` or `--a jose`: the same pass-through verifying every token (the bench's references
// for the cold rows: synchronous node:crypto.verify, or jose jwtVerify), for `--path /jwt --cold`.
// `--a headers`: the pass-through sending the forwarding headers and request id gatehouse sends
// (the like-for-like floor of the public route).
const REFERENCE = opts.a === 'sync' || opts.a === 'jose' || opts.a === 'headers' ? opts.a : null;
const BASELINE = opts.a === 'baseline' || REFERENCE !== null;
const builds = { A: BASELINE ? null : path.resolve(opts.a), B: path.resolve(opts.b) };
for (const [label, dir] of Object.entries(builds)) {
  if (dir === null) continue;
  if (!existsSync(path.join(dir, 'dist/cli/main.js'))) {
    process.stderr.write(`build ${label} (${dir}) has no dist/: run npx tsc -p tsconfig.build.json there first\n`);
    process.exit(2);
  }
}

// Node flags for one side only, after the workers' V8 flags (a later flag wins).
const extraFlags = { A: opts['a-flags'].split(/\s+/).filter(Boolean), B: opts['b-flags'].split(/\s+/).filter(Boolean) };

const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-ab-'));
const procs = processes(TASKSET);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
process.on('SIGINT', () => process.exit(130));

// Upstream: nginx on core 1, a ~100-byte answer.
const upstreamPort = await freePort();
const upstream = `http://127.0.0.1:${upstreamPort}`;
await waitReady(`${upstream}/`, procs.start(1, NGINX, writeNginxConfig(path.join(dir, 'nginx'), upstreamPort)), 'nginx');

// Issuer: one key of the chosen algorithm, its JWK Set served from this process.
const { issuer, tokens } = await startIssuer(opts.alg, Number(opts.tokens));

async function startBaseline(label) {
  const port = await freePort();
  const child = procs.start(0, process.execPath, [...(await gatewayV8Flags(builds.B)), ...extraFlags.A, ...baselineArgs(port, upstream, REFERENCE, issuer)]);
  await waitReady(`http://127.0.0.1:${port}/public`, child, `baseline ${label}`);
  return { label, port, child };
}

async function startGatehouse(label) {
  const port = await freePort();
  const file = path.join(dir, `gatehouse-${label}.yaml`);
  writeFileSync(file, abGatehouseConfig({ port, issuer, upstream, alg: opts.alg, cold: opts.cold, guards: opts.guards }));
  const root = builds[label];
  const child = procs.start(0, process.execPath, [...(await gatewayV8Flags(root)), ...extraFlags[label], ...gatehouseArgs(root, file)]);
  await waitReady(`http://127.0.0.1:${port}/public`, child, `gatehouse ${label}`);
  return { label, port, child };
}

const script = path.join(dir, 'ab.lua');
writeFileSync(script, tokenScript(opts.path === '/public' ? [] : tokens));

function drive(target, seconds) {
  const args = ['-t1', `-c${opts.connections}`, `-d${seconds}s`, '--latency', '-s', script, `http://127.0.0.1:${target.port}${opts.path}`];
  const [c, a] = TASKSET ? ['taskset', ['-c', '1', WRK, ...args]] : [WRK, args];
  const out = spawnSync(c, a, { encoding: 'utf8' });
  const requests = Number(/(\d+) requests in/.exec(out.stdout)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out.stdout)?.[1] ?? 0);
  if (!(requests > 0) || non2xx > 0) throw new Error(`wrk against ${target.label}: ${out.stdout}${out.stderr}`);
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out.stdout);
  const ms = p99 ? Number(p99[1]) * { us: 0.001, ms: 1, s: 1000 }[p99[2]] : NaN;
  return { requests, p99: ms };
}

function measure(target, seconds) {
  const pid = target.child.pid;
  // With taskset the child is taskset's exec: the same pid.
  const cpu0 = cpuMicros(pid);
  const { requests, p99 } = drive(target, seconds);
  return { cpu: (cpuMicros(pid) - cpu0) / requests, p99 };
}

async function stop(target) {
  const exited = new Promise((r) => target.child.once('exit', r));
  target.child.kill('SIGTERM');
  const timer = setTimeout(() => target.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

const seconds = Number(opts.seconds);
const rounds = Number(opts.rounds);
const pairs = Number(opts.pairs);
const ratios = [];
const per = { A: [], B: [] };
const tail = { A: [], B: [] };
const pairMedians = [];
// A process's speed for its whole life depends on where its code and data landed: two fresh
// processes of one build can differ by several percent. Each pair is a fresh A and a fresh B.
for (let p = 0; p < pairs; p++) {
  const A = BASELINE ? await startBaseline('A') : await startGatehouse('A');
  const B = await startGatehouse('B');
  process.stderr.write(`ab: pair ${p + 1}: warming up both for ${opts.warmup}s each\n`);
  drive(A, Number(opts.warmup));
  drive(B, Number(opts.warmup));
  const pairRatios = [];
  for (let i = 0; i < rounds; i++) {
    // A B, then B A: neither build always goes first.
    const order = i % 2 === 0 ? [A, B] : [B, A];
    const got = {};
    for (const t of order) got[t.label] = measure(t, seconds);
    per.A.push(got.A.cpu);
    per.B.push(got.B.cpu);
    tail.A.push(got.A.p99);
    tail.B.push(got.B.p99);
    pairRatios.push(got.B.cpu / got.A.cpu);
    process.stderr.write(
      `ab: pair ${p + 1} round ${i + 1}: A ${got.A.cpu.toFixed(1)} µs/req p99 ${got.A.p99.toFixed(2)} ms, B ${got.B.cpu.toFixed(1)} µs/req p99 ${got.B.p99.toFixed(2)} ms, B/A ${(got.B.cpu / got.A.cpu).toFixed(3)}\n`,
    );
  }
  ratios.push(...pairRatios);
  pairMedians.push(pairRatios);
  await stop(A);
  await stop(B);
}
const q = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  const at = (s.length - 1) * p;
  return s[Math.floor(at)] + (s[Math.ceil(at)] - s[Math.floor(at)]) * (at - Math.floor(at));
};
const flagsOf = (label) => (extraFlags[label].length ? ` with ${extraFlags[label].join(' ')}` : '');
const reuse = tokens.length > 1 ? ` ${tokens.length} tokens in turn` : ' one token reused';
const what = `${opts.path}${opts.path === '/public' ? '' : ` ${opts.alg}${opts.cold ? ' cold (no token cache)' : ''}${reuse}`}`;
process.stdout.write(
  `ab: ${what}, ${pairs > 1 ? `${pairs} pairs of fresh processes × ` : ''}${rounds} rounds of ${seconds}s, ${opts.connections} connections\n` +
    `  A ${builds.A ?? (REFERENCE ? `bench/baseline.js ${REFERENCE} (the reference)` : 'bench/baseline.js (the Node floor)')}${flagsOf('A')}: median ${q(per.A, 0.5).toFixed(1)} µs/req, p99 ${q(tail.A, 0.5).toFixed(2)} ms (rounds' median; worst ${Math.max(...tail.A).toFixed(2)})\n` +
    `  B ${builds.B}${flagsOf('B')}: median ${q(per.B, 0.5).toFixed(1)} µs/req, p99 ${q(tail.B, 0.5).toFixed(2)} ms (rounds' median; worst ${Math.max(...tail.B).toFixed(2)})\n` +
    `  B/A CPU per request: median ${q(ratios, 0.5).toFixed(3)} (interquartile ${q(ratios, 0.25).toFixed(3)}–${q(ratios, 0.75).toFixed(3)})\n` +
    (pairs > 1 ? `  B/A per pair of fresh processes: ${pairMedians.map((r) => q(r, 0.5).toFixed(3)).join(', ')}\n` : ''),
);
process.exit(0);
