#!/usr/bin/env node
// Micro-benchmark (issue 8): the cost of verifying one JWT access token on a miss, per
// algorithm, on the same keys and the same token:
//   - jose `jwtVerify` with an imported key (WebCrypto underneath: asynchronous),
//   - jose `jwtVerify` with a local JWK Set (what a jose-based gateway typically does),
//   - synchronous `node:crypto.verify` with a cached KeyObject (+ payload JSON.parse): the floor,
//   - gatehouse's own verifier (dist/authn/jwt.js: every header and claim rule, no cache).
// Prints verifications/s (one at a time, wall clock) and CPU µs per verification (all threads:
// WebCrypto work runs on the libuv pool). Pins itself to core 0 when taskset exists.
//
//   npm run build && node bench/jwt-verify.js [--seconds 1]
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { importBuilt, pinSelfToCore0 } from './helpers.js';

const { values: opts } = parseArgs({ options: { seconds: { type: 'string', default: '1' } } });
const SECONDS = Number(opts.seconds);

pinSelfToCore0();
const { createJwtVerifier } = await importBuilt('jwt-verify', 'authn/jwt.js');
const { loadConfigText } = await importBuilt('jwt-verify', 'config/load.js');
const { createLogger } = await importBuilt('jwt-verify', 'telemetry/log.js');
const { createMetrics } = await importBuilt('jwt-verify', 'telemetry/metrics.js');

const ISSUER = 'https://issuer.bench.example';
const AUDIENCE = 'https://api.bench.example';
const HASH = { RS256: 'sha256', ES256: 'sha256', EdDSA: null };

/** Runs `fn` (sync or async) back to back for SECONDS; returns ops/s and CPU µs/op. */
async function time(fn) {
  for (let i = 0; i < 200; i++) await fn(); // warm-up: JIT, key caches
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const until = t0 + SECONDS * 1000;
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 50; i++) await fn();
    n += 50;
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { opsPerSec: (n * 1000) / wall, cpuMicros: (cpu.user + cpu.system) / n };
}

const services = { log: createLogger({ level: 'silent' }), metrics: createMetrics(), now: Date.now };
const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-jwt-bench-'));
const rows = [];

for (const alg of ['RS256', 'ES256', 'EdDSA']) {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519', extractable: true } : { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg, use: 'sig' };
  const jwks = { keys: [jwk] };
  const token = await new SignJWT({ scope: 'orders:read', client_id: 'bench' })
    .setProtectedHeader({ alg, kid: 'k1', typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('bench-user')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey);

  // jose
  const joseOptions = { issuer: ISSUER, audience: AUDIENCE, algorithms: [alg] };
  const localSet = createLocalJWKSet(jwks);
  const joseKey = await jwtVerify(token, publicKey, joseOptions);
  if (!joseKey.payload.sub) throw new Error('jose did not verify');

  // node:crypto, synchronous, KeyObject cached; ECDSA signatures are IEEE P1363 (r || s) in JWS.
  const keyObject = createPublicKey({ key: jwk, format: 'jwk' });
  const keyInput = alg === 'ES256' ? { key: keyObject, dsaEncoding: 'ieee-p1363' } : keyObject;
  const hash = HASH[alg];
  const syncVerify = () => {
    const dot2 = token.lastIndexOf('.');
    const dot1 = token.indexOf('.');
    const ok = cryptoVerify(hash, Buffer.from(token.slice(0, dot2), 'latin1'), keyInput, Buffer.from(token.slice(dot2 + 1), 'base64url'));
    if (!ok) throw new Error('signature');
    return JSON.parse(Buffer.from(token.slice(dot1 + 1, dot2), 'base64url').toString('utf8'));
  };
  syncVerify();

  // gatehouse: the issuer as the config would define it, keys from the same JWK Set, no cache.
  const file = path.join(dir, `${alg}.yaml`);
  const yaml = `issuers:\n  - { name: bench, issuer: "${ISSUER}", jwksUri: "https://issuer.bench.example/jwks", audiences: ["${AUDIENCE}"], algorithms: [${alg}] }\nupstreams: [{ name: a, url: "http://127.0.0.1:1" }]\nroutes: [{ name: r, path: /, upstream: a }]\nlisten: { port: 0 }\n`;
  writeFileSync(file, yaml);
  const config = loadConfigText(yaml, file, process.env, dir);
  const verifier = createJwtVerifier(config.issuers[0], services, { cache: null, loadKeys: async () => jwks });
  await verifier.start();
  const first = await verifier.verify(token);
  if (!first.ok) throw new Error(`gatehouse did not verify: ${first.error.code}`);

  const results = {
    'jose jwtVerify (KeyObject)': await time(() => jwtVerify(token, publicKey, joseOptions)),
    'jose jwtVerify (local JWK Set)': await time(() => jwtVerify(token, localSet, joseOptions)),
    'node:crypto.verify sync (cached KeyObject)': await time(syncVerify),
    'gatehouse verifier (all rules, no cache)': await time(() => verifier.verify(token)),
  };
  await verifier.close();
  const reference = results['jose jwtVerify (KeyObject)'].opsPerSec;
  for (const [name, r] of Object.entries(results)) rows.push([alg, name, Math.round(r.opsPerSec), r.cpuMicros.toFixed(1), `${(r.opsPerSec / reference).toFixed(2)}×`]);
}
rmSync(dir, { recursive: true, force: true });

const header = ['alg', 'verifier', 'verifications/s', 'CPU µs/op', 'vs jose'];
const all = [header, ...rows.map((r) => r.map(String))];
const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
const line = (r) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
process.stdout.write(`JWT verification on a cache miss, one at a time, node ${process.version}\n\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
for (const r of all.slice(1)) process.stdout.write(`${line(r)}\n`);
process.stdout.write(`\n| ${header.join(' | ')} |\n|---|---|--:|--:|--:|\n${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n`);
