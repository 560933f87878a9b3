// What bench/run.js, bench/ab.js, bench/instructions.js and the micro-benchmarks share: finding tools, the nginx
// upstream, free ports, a process's CPU time, child processes, the A/B tools' issuer and config.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

/** The path of a command on PATH, or null. */
export function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The repository's root (a micro-benchmark's built modules are under its dist/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Pin this process (all its threads) to core 0 when taskset exists: a micro-benchmark's own core. */
export function pinSelfToCore0() {
  if (which('taskset') !== null) spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
}

/** The built module dist/`file` (a path under dist/), or exit 2 asking for `npm run build`. */
export async function importBuilt(tool, file) {
  const absolute = path.join(ROOT, 'dist', file);
  if (!existsSync(absolute)) {
    process.stderr.write(`${tool}: run \`npm run build\` first (dist/${file} is missing)\n`);
    process.exit(2);
  }
  return import(pathToFileURL(absolute).href);
}

/** nginx (Debian: nginx-light), which is in /usr/sbin, often not on a user's PATH; or null. */
export function nginxPath() {
  return which('nginx') ?? (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null);
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** utime + stime of a process so far (all its threads), in µs, from /proc/PID/stat. */
export function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** The upstream's answer: a ~100-byte JSON body, like a small API response. */
export const UPSTREAM_BODY = '{"ok":true,"service":"bench-upstream","message":"a small answer of about one hundred bytes."}\n';

/**
 * Write an nginx config under `prefix` (one process, no daemon, access log off, keep-alive for
 * as long as a bench runs) that answers every request on 127.0.0.1:`port` with UPSTREAM_BODY.
 * Returns the arguments to start nginx with.
 *
 * @example
 * const args = writeNginxConfig('/tmp/x/nginx', 8081); // spawn('nginx', args)
 */
export function writeNginxConfig(prefix, port) {
  mkdirSync(path.join(prefix, 'tmp'), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 65s;
  server {
    listen 127.0.0.1:${port};
    location / {
      default_type application/json;
      return 200 '${UPSTREAM_BODY.trim()}\\n';
    }
  }
}
`,
  );
  return ['-p', prefix, '-c', conf, '-e', path.join(prefix, 'error.log')];
}

/**
 * Child processes of a bench script, each optionally pinned to one core with `taskset`, and all
 * killed when the script exits. `child.output` collects what it prints.
 *
 * @example
 * const procs = processes(which('taskset'));
 * const nginx = procs.start(1, nginxPath(), writeNginxConfig(dir, port));
 */
export function processes(taskset) {
  const children = [];
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
  });
  return {
    start(core, cmd, args) {
      const [c, a] = taskset ? [taskset, ['-c', String(core), cmd, ...args]] : [cmd, args];
      const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
      child.output = '';
      child.stdout.on('data', (d) => (child.output += d));
      child.stderr.on('data', (d) => (child.output += d));
      children.push(child);
      return child;
    },
  };
}

/** Resolves once `url` answers (any status); rejects when `child` exits or `timeoutMs` passes. */
export async function waitReady(url, child, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}):\n${child.output}`);
    const ok = await new Promise((r) => http.get(url, (res) => (res.resume(), r(true))).on('error', () => r(false)));
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not answer on ${url}:\n${child.output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const BENCH_AUDIENCE = 'https://api.bench.example';

/**
 * One access token as the bench signs them (the bench's issuer and the A/B tools' alike): the
 * claims a gatehouse route checks (`iss`, `aud`, `exp` two hours on), a scope and two more claims,
 * and `n` in a claim and in `jti` so that tokens of one key differ.
 */
export function signBenchToken({ alg, kid, issuer, privateKey, n = 0, sub = 'bench-user' }) {
  return new SignJWT({ scope: 'orders:read orders:write', tenant: 'acme', client_id: 'bench-client', n })
    .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setAudience(BENCH_AUDIENCE)
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('2h')
    .setJti(`bench-${alg}-${n}`)
    .sign(privateKey);
}

/**
 * A one-key issuer for the A/B tools: a fresh key pair of `alg`, its JWK Set served on
 * 127.0.0.1 (`<issuer>/jwks`), and `count` access tokens ({@link signBenchToken}).
 */
export async function startIssuer(alg, count = 1) {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'ab', alg, use: 'sig' }] });
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const tokens = [];
  for (let n = 0; n < count; n++) tokens.push(await signBenchToken({ alg, kid: 'ab', issuer, privateKey, n }));
  return { issuer, tokens, server };
}

/** `s` as a Lua string literal. */
function luaString(s) {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * A wrk script that sends `Authorization: Bearer <token>`, one token reused, or several in turn.
 * Requests are formatted once in init(): request() only picks the next one, so the Lua side costs
 * little per request and the load generator does not become the bottleneck. No tokens: ''.
 */
export function tokenScript(tokens) {
  if (tokens.length === 0) return '';
  if (tokens.length === 1) return `wrk.headers["Authorization"] = ${luaString(`Bearer ${tokens[0]}`)}\n`;
  return `local tokens = {
${tokens.map((t) => `  ${luaString(`Bearer ${t}`)},`).join('\n')}
}
local requests = {}
local n = #tokens
local i = 0
init = function(args)
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  for j = 1, n do
    headers["Authorization"] = tokens[j]
    requests[j] = wrk.format(nil, nil, headers)
  end
end
request = function()
  i = i % n + 1
  return requests[i]
end
`;
}

/** The A/B tools' gatehouse config: a public route and a JWT route in front of `upstream`. */
export function abGatehouseConfig({ port, issuer, upstream, alg, cold, guards = false }) {
  // `guards`: a cors section and a pre-auth limit that never refuses, so each route's preAuth slot
  // holds two stages (the CORS mark and the limit), as in a config that uses both.
  const extra = guards ? `cors: { origins: ['https://app.example'] }\npreAuthLimit: { limit: 100000000, window: 1s }\n` : '';
  return `${extra}listen: [{ name: main, host: 127.0.0.1, port: ${port} }]
log: { level: warn, accessLog: false }
tokenCache: { enabled: ${cold ? 'false' : 'true'}, maxEntries: 10000 }
issuers:
  - { name: ab, issuer: ${issuer}, jwksUri: ${issuer}/jwks, audiences: [${BENCH_AUDIENCE}], algorithms: [${alg}] }
upstreams:
  - { name: api, url: ${upstream}, audience: ${BENCH_AUDIENCE} }
routes:
  - { name: public, path: /public, upstream: api, public: true }
  - { name: jwt, path: /jwt, upstream: api, issuers: [ab] }
`;
}

/**
 * The V8 flags every process of the gatehouse built in `root` runs with (the baseline and the
 * references run with them too): `GATEWAY_V8_FLAGS` of `dist/boot/v8-flags.js`, or, in a
 * checkout older than that module (A/B against an old build), its workers' `WORKER_V8_FLAGS`.
 */
export async function gatewayV8Flags(root) {
  const current = path.join(root, 'dist/boot/v8-flags.js');
  if (existsSync(current)) return (await import(current)).GATEWAY_V8_FLAGS;
  const older = path.join(root, 'dist/cli/cluster.js');
  return existsSync(older) ? ((await import(older)).WORKER_V8_FLAGS ?? []) : [];
}

/**
 * The script arguments (after node and its flags) of the bench's baseline for the A/B tools;
 * `reference` 'sync' or 'jose' makes it verify every token against `issuer` (null: pass through).
 */
export function baselineArgs(port, upstream, reference, issuer) {
  const verify = reference ? [reference, `${issuer}/jwks`, issuer, BENCH_AUDIENCE] : [];
  return [path.join(path.dirname(fileURLToPath(import.meta.url)), 'baseline.js'), String(port), upstream, ...verify];
}

/** The script arguments of the gatehouse built in `root`: one worker, the config `file`. */
export function gatehouseArgs(root, file) {
  return [path.join(root, 'bin/gatehouse.js'), 'start', '--config', file, '--workers', '1'];
}

/** The options both A/B tools share: what B is (a checkout) and what is measured (path, algorithm, token cache off). */
export function targetOptions(root) {
  return {
    b: { type: 'string', default: root },
    path: { type: 'string', default: '/public' },
    alg: { type: 'string', default: 'ES256' },
    cold: { type: 'boolean', default: false },
    tokens: { type: 'string', default: '1' },
  };
}

/** Exit 2 naming the first `[flag, value]` whose value is not a positive number (a count or seconds). */
export function requirePositive(tool, flags) {
  for (const [flag, value] of flags) {
    if (!(Number(value) > 0)) {
      process.stderr.write(`${tool}: ${flag} must be a positive number, not "${value}"\n`);
      process.exit(2);
    }
  }
}

/**
 * The command line of an A/B tool: `options` plus `--help`, which prints `usage` and exits 0; an
 * unknown or malformed option prints what is wrong and `usage`, and exits 2.
 */
export function parseOptions(tool, options, usage) {
  try {
    const { values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h', default: false } }, strict: true });
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    return values;
  } catch (err) {
    process.stderr.write(`${tool}: ${err.message}\n${usage}\n`);
    process.exit(2);
  }
}
