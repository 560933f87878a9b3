#!/usr/bin/env node
// Instructions per request under callgrind (issue 8): what `bench/ab.js` reads in CPU time, read
// in instructions, which do not drift with the machine.
//
//   node bench/instructions.js [--a baseline|sync|jose|OLD_CHECKOUT] [--b .] [--path /public|/jwt]
//                              [--alg ES256] [--cold] [--tokens N] [--warmup 60] [--seconds 20] [--top 30]
//
// Each side (A, then B; default A is bench/baseline.js, B this checkout) runs alone under
// `valgrind --tool=callgrind` on core 0 with instrumentation off, is driven by wrk (core 1,
// 50 connections) for --warmup seconds, then counted for --seconds of load. The result is the
// user-space instructions the process executed (all threads) divided by the requests wrk
// completed, by part (gatehouse's JavaScript, undici's, node's, V8's builtins, regular
// expressions, V8's compiler and GC, node's GC profiler, other native code) and by function;
// JIT-compiled functions are named through node's `--perf-basic-prof` map.
//
// What it does not see: time in the kernel (writev, epoll: about half of a request's CPU time
// here) and the cost of cache misses. What it overstates: work that runs per unit of time or per
// garbage collection. Under valgrind a process serves about 400 requests a second instead of
// 30,000 and V8 collects the young generation far more often per request (1 per 10–20 requests,
// against 1 per 240 natively), so timers and the GC profiler's per-collection cost weigh
// 25–75× more than they do natively. Compare two builds on the same line, not a line with the
// CPU time of `npm run bench`.
//
// Needs valgrind, wrk and nginx (Debian: valgrind, wrk, nginx-light); each side takes about
// 1.5 minutes plus --warmup and --seconds.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { abGatehouseConfig, baselineArgs, freePort, gatehouseArgs, nginxPath, parseOptions, processes, requirePositive, startIssuer, targetOptions, tokenScript, waitReady, which, gatewayV8Flags, writeNginxConfig } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const opts = parseOptions(
  'bench/instructions.js',
  {
    a: { type: 'string', default: 'baseline' },
    ...targetOptions(ROOT),
    warmup: { type: 'string', default: '60' },
    seconds: { type: 'string', default: '20' },
    top: { type: 'string', default: '30' },
  },
  'usage: node bench/instructions.js [--a baseline|sync|jose|OLD_CHECKOUT] [--b NEW_CHECKOUT] [--path /public|/jwt] [--alg RS256|ES256|EdDSA] [--cold] [--tokens N] [--warmup S] [--seconds S] [--top N]',
);
const tools = { valgrind: which('valgrind'), annotate: which('callgrind_annotate'), control: which('callgrind_control'), wrk: which('wrk'), nginx: nginxPath(), taskset: which('taskset') };
for (const [name, pkg] of [['valgrind', 'valgrind'], ['annotate', 'valgrind'], ['control', 'valgrind'], ['wrk', 'wrk'], ['nginx', 'nginx-light']]) {
  if (!tools[name]) {
    process.stderr.write(`bench/instructions.js needs ${name === 'annotate' ? 'callgrind_annotate' : name === 'control' ? 'callgrind_control' : name} (Debian: ${pkg})\n`);
    process.exit(2);
  }
}
requirePositive('bench/instructions.js', [['--warmup', opts.warmup], ['--seconds', opts.seconds], ['--tokens', opts.tokens], ['--top', opts.top]]);
const REFERENCE = opts.a === 'sync' || opts.a === 'jose' ? opts.a : null;
const sides = [
  { label: 'A', kind: opts.a === 'baseline' || REFERENCE ? 'baseline' : 'gatehouse', root: opts.a === 'baseline' || REFERENCE ? null : path.resolve(opts.a) },
  { label: 'B', kind: 'gatehouse', root: path.resolve(opts.b) },
];
for (const side of sides) {
  if (side.root && !existsSync(path.join(side.root, 'dist/cli/main.js'))) {
    process.stderr.write(`build ${side.label} (${side.root}) has no dist/: run npx tsc -p tsconfig.build.json there first\n`);
    process.exit(2);
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-instructions-'));
const procs = processes(tools.taskset);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
process.on('SIGINT', () => process.exit(130));

const upstreamPort = await freePort();
const upstream = `http://127.0.0.1:${upstreamPort}`;
await waitReady(`${upstream}/`, procs.start(1, tools.nginx, writeNginxConfig(path.join(dir, 'nginx'), upstreamPort)), 'nginx');
const { issuer, tokens } = await startIssuer(opts.alg, Number(opts.tokens));
const script = path.join(dir, 'load.lua');
writeFileSync(script, tokenScript(opts.path === '/public' ? [] : tokens));

function drive(port, seconds) {
  const args = ['-t1', '-c50', `-d${seconds}s`, '--timeout', '30s', '-s', script, `http://127.0.0.1:${port}${opts.path}`];
  const [c, a] = tools.taskset ? [tools.taskset, ['-c', '1', tools.wrk, ...args]] : [tools.wrk, args];
  const out = spawnSync(c, a, { encoding: 'utf8' });
  const requests = Number(/(\d+) requests in/.exec(out.stdout)?.[1] ?? NaN);
  if (!(requests > 0) || /Non-2xx/.test(out.stdout)) throw new Error(`wrk: ${out.stdout}${out.stderr}`);
  return requests;
}

function control(pid, ...args) {
  const out = spawnSync(tools.control, [...args, String(pid)], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${out.stdout}${out.stderr}`);
}

/** One side under callgrind: returns its instructions per request by function. */
async function count(side) {
  const port = await freePort();
  const root = side.root ?? ROOT;
  const V8_FLAGS = await gatewayV8Flags(root);
  let args;
  if (side.kind === 'gatehouse') {
    const file = path.join(dir, `gatehouse-${side.label}.yaml`);
    writeFileSync(file, abGatehouseConfig({ port, issuer, upstream, alg: opts.alg, cold: opts.cold }));
    args = gatehouseArgs(root, file);
  } else {
    args = baselineArgs(port, upstream, REFERENCE, issuer);
  }
  // Under valgrind V8 keeps the young generation small and collects it every few requests; a
  // young generation fixed at the size it reaches under real load (the flags' maximum, else V8's
  // default of 16 MiB per semi-space on 64-bit) keeps collections per request closer to a real
  // process's.
  const semi = V8_FLAGS.map((f) => /^--max-semi-space-size=(\d+)$/.exec(f)?.[1]).find(Boolean) ?? '16';
  const v8Flags = [...V8_FLAGS, `--min-semi-space-size=${semi}`];
  const out = path.join(dir, `callgrind-${side.label}.out`);
  const child = procs.start(0, tools.valgrind, [
    '--tool=callgrind',
    '--instr-atstart=no',
    // V8 writes and patches its machine code in anonymous memory.
    '--smc-check=all-non-file',
    `--callgrind-out-file=${out}`,
    process.execPath,
    '--perf-basic-prof',
    // With it node 20 also writes V8's log, by default as isolate-*.log in the working directory
    // (the checkout): into this run's temporary directory instead.
    '--no-logfile-per-isolate',
    `--logfile=${path.join(dir, `v8-${side.label}.log`)}`,
    ...v8Flags,
    ...args,
  ]);
  await waitReady(`http://127.0.0.1:${port}/public`, child, `${side.label} under valgrind`, 300_000);
  process.stderr.write(`instructions: ${side.label}: warming up for ${opts.warmup}s\n`);
  drive(port, Number(opts.warmup));
  control(child.pid, '-i', 'on');
  drive(port, 5); // valgrind translates the code again once instrumentation is on
  control(child.pid, '-z');
  process.stderr.write(`instructions: ${side.label}: counting for ${opts.seconds}s\n`);
  const requests = drive(port, Number(opts.seconds));
  control(child.pid, '-d');
  // The dump is written by the process itself, between two requests.
  const dump = `${out}.1`;
  for (let i = 0; i < 100 && !existsSync(dump); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500));
  const pid = /\npid: (\d+)/.exec(readFileSync(dump, 'utf8').slice(0, 2000))?.[1];
  const perfMap = `/tmp/perf-${pid}.map`;
  const functions = byFunction(dump, perfMap);
  child.kill('SIGKILL');
  rmSync(perfMap, { force: true });
  return { requests, functions };
}

/** Instructions per function name from a callgrind dump; JIT code named by the perf map. */
function byFunction(dump, perfMap) {
  const ranges = existsSync(perfMap)
    ? readFileSync(perfMap, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [start, size, ...name] = line.split(' ');
          return { start: parseInt(start, 16), end: parseInt(start, 16) + parseInt(size, 16), name: name.join(' ').replace(/^(JS|LazyCompile|Function):\s*/, '') };
        })
        .sort((x, y) => x.start - y.start)
    : [];
  const nameOf = (address) => {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ranges[mid].start <= address) lo = mid + 1;
      else hi = mid - 1;
    }
    const r = ranges[hi];
    return r && address < r.end ? `JS ${r.name}` : 'JS (unnamed code)';
  };
  const annotated = spawnSync(tools.annotate, ['--threshold=100', dump], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (annotated.status !== 0) throw new Error(`callgrind_annotate: ${annotated.stderr}`);
  const functions = new Map();
  for (const line of annotated.stdout.split('\n')) {
    const m = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line);
    if (!m || line.includes('PROGRAM TOTALS')) continue;
    const ir = Number(m[1].replaceAll(',', ''));
    const jit = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$/.exec(m[2]);
    const name = jit ? nameOf(parseInt(jit[1], 16)) : m[2].replace(/\s*\[[^\]]*\]$/, '').replace(/^\?\?\?:/, '').replace(/'\d+$/, '');
    functions.set(name, (functions.get(name) ?? 0) + ir);
  }
  return functions;
}

const PARTS = [
  ['node GC profiler (per collection)', (n) => /ostream|streambuf|SetHeapStatistics|num_put|JSONWriter/.test(n)],
  ['gatehouse JS', (n) => n.startsWith('JS ') && /\/dist\//.test(n)],
  ['undici JS', (n) => n.startsWith('JS ') && n.includes('undici')],
  ['regular expressions', (n) => n.startsWith('JS RegExp') || n.startsWith('Builtins_RegExp') || /RegExpImpl|RegExpMacroAssembler/.test(n)],
  ['node JS', (n) => n.startsWith('JS ') && n.includes('node:')],
  ['other JS', (n) => n.startsWith('JS ')],
  ['V8 builtins', (n) => n.startsWith('Builtins_')],
  ['V8 compiler', (n) => /compiler::|maglev|Maglev|Turbofan|turboshaft/.test(n)],
  ['V8 GC', (n) => /Scaveng|Heap::|MarkCompact|Marking|Sweep|Evacuat/.test(n)],
  ['memcpy', (n) => /memmove|memcpy/.test(n)],
  ['other native', () => true],
];
const partOf = (name) => PARTS.find(([, test]) => test(name))[0];

const results = [];
for (const side of sides) results.push(await count(side));
const perRequest = results.map(({ requests, functions }) => {
  const m = new Map();
  for (const [name, ir] of functions) m.set(name, ir / requests);
  return m;
});
const sum = (m) => [...m.values()].reduce((x, y) => x + y, 0);
const fmt = (x) => Math.round(x).toLocaleString('en-US');
const signed = (x) => `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x))}`;
const names = [opts.a === 'baseline' ? 'bench/baseline.js' : REFERENCE ? `bench/baseline.js ${REFERENCE}` : path.resolve(opts.a), path.resolve(opts.b)];
const [A, B] = perRequest;
const totalA = sum(A);
const totalB = sum(B);
// Two parts vary between two runs of one build and the headline leaves them out: V8's optimizing
// compiler, which still runs after minutes under valgrind (its timing-driven tiering sees a slow
// process), by several thousand instructions per request; and node's GC profiler, whose cost per
// collection is multiplied by how often V8 collects under valgrind (17,175 and 28,229 per request
// for the same build in two runs; under 1% of the CPU time natively).
const UNSTEADY = new Set(['V8 compiler', 'node GC profiler (per collection)']);
const steady = (m) => [...m].filter(([n]) => !UNSTEADY.has(partOf(n))).reduce((x, [, ir]) => x + ir, 0);
const steadyA = steady(A);
const steadyB = steady(B);
let report = `instructions per request (callgrind, user space, all threads): ${opts.path}${opts.path === '/public' ? '' : ` ${opts.alg}${opts.cold ? ' cold' : ''}`}, ${opts.warmup}s warm-up, ${opts.seconds}s counted\n`;
report += `  A ${names[0]}: ${fmt(steadyA)} without V8's compiler and the GC profiler, ${fmt(totalA)} in all (${results[0].requests.toLocaleString('en-US')} requests)\n`;
report += `  B ${names[1]}: ${fmt(steadyB)} without V8's compiler and the GC profiler, ${fmt(totalB)} in all (${results[1].requests.toLocaleString('en-US')} requests)\n`;
report += `  B/A ${(steadyB / steadyA).toFixed(3)} without them, ${(totalB / totalA).toFixed(3)} in all\n\n`;
const parts = new Map(PARTS.map(([p]) => [p, [0, 0]]));
for (const [i, m] of [A, B].entries()) for (const [name, ir] of m) parts.get(partOf(name))[i] += ir;
report += `| part | A | B | B − A |\n|---|--:|--:|--:|\n`;
for (const [p, [a, b]] of [...parts].sort((x, y) => y[1][1] - y[1][0] - (x[1][1] - x[1][0]))) report += `| ${p} | ${fmt(a)} | ${fmt(b)} | ${signed(b - a)} |\n`;
const all = new Set([...A.keys(), ...B.keys()]);
const diffs = [...all].map((n) => [n, (B.get(n) ?? 0) - (A.get(n) ?? 0)]).sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
report += `\nlargest differences by function (instructions per request):\n\n| function | A | B | B − A |\n|---|--:|--:|--:|\n`;
for (const [n, d] of diffs.slice(0, Number(opts.top))) report += `| ${n.slice(0, 110).replaceAll('|', '\\|')} | ${fmt(A.get(n) ?? 0)} | ${fmt(B.get(n) ?? 0)} | ${signed(d)} |\n`;
process.stdout.write(report);
process.exit(0);
