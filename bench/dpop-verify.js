#!/usr/bin/env node
// Micro-benchmark: the cost of checking one DPoP proof (RFC 9449) with gatehouse's checker
// (dist/authn/dpop.js: every check of src/authn/dpop.ts, the replay memory included), per
// algorithm, against the bare signature check of the same proof with a cached KeyObject.
// Every proof is new (its own jti), as every request's is; the client's key is the same, as it
// is for one client. Prints µs per proof (median of the rounds). Pins itself to core 0 when
// taskset exists.
//
//   npm run build && node bench/dpop-verify.js [--proofs 20000] [--rounds 5]
import { generateKeyPairSync, hash, randomUUID, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { importBuilt, pinSelfToCore0 } from './helpers.js';

const { values: opts } = parseArgs({ options: { proofs: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' } } });
const N = Number(opts.proofs);
const ROUNDS = Number(opts.rounds);

pinSelfToCore0();
const { createDpopChecker, ProofReplayCache, jwkThumbprint } = await importBuilt('dpop-verify', 'authn/dpop.js');

const TOKEN = `eyJ${'a'.repeat(600)}.eyJ${'b'.repeat(300)}.${'c'.repeat(86)}`;
const ath = hash('sha256', TOKEN, 'base64url');
const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const ALGORITHMS = {
  ES256: { pair: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), hash: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  EdDSA: { pair: () => generateKeyPairSync('ed25519'), hash: null, options: {} },
  RS256: { pair: () => generateKeyPairSync('rsa', { modulusLength: 2048 }), hash: 'sha256', options: {} },
};

console.log('| proof alg | gatehouse DPoP check, µs/proof | bare signature check, µs/proof |');
console.log('|---|--:|--:|');
for (const [alg, spec] of Object.entries(ALGORITHMS)) {
  const { privateKey, publicKey } = spec.pair();
  const jwk = publicKey.export({ format: 'jwk' });
  const jkt = jwkThumbprint(jwk);
  const header = b64({ alg, typ: 'dpop+jwt', jwk });
  const iat = Math.floor(Date.now() / 1000);
  const proofs = [];
  for (let i = 0; i < N; i++) {
    const input = `${header}.${b64({ jti: randomUUID(), htm: 'GET', htu: 'https://api.example.test/orders/7', iat, ath })}`;
    proofs.push(`${input}.${sign(spec.hash, Buffer.from(input), { key: privateKey, ...spec.options }).toString('base64url')}`);
  }
  const config = { algorithms: [alg], proofMaxAge: 60_000, clockSkew: 5_000, maxProofs: N * 2 };
  const checked = [];
  const bare = [];
  for (let round = 0; round < ROUNDS; round++) {
    const checker = createDpopChecker(config, () => Date.now(), new ProofReplayCache(70_000, N * 2));
    const contexts = proofs.map((p) => ({ method: 'GET', targetPath: '/orders/7', secure: true, headers: { host: 'api.example.test', dpop: p }, rawHeaders: ['Host', 'api.example.test', 'DPoP', p] }));
    let t = performance.now();
    for (let i = 0; i < N; i++) if (checker.check(contexts[i], TOKEN, jkt) !== null) throw new Error(`${alg}: a proof was refused`);
    checked.push(((performance.now() - t) * 1000) / N);
    t = performance.now();
    for (let i = 0; i < N; i++) {
      const p = proofs[i];
      const dot = p.lastIndexOf('.');
      if (!verify(spec.hash, Buffer.from(p.slice(0, dot)), { key: publicKey, ...spec.options }, Buffer.from(p.slice(dot + 1), 'base64url'))) throw new Error('bare verify failed');
    }
    bare.push(((performance.now() - t) * 1000) / N);
  }
  console.log(`| ${alg} | ${median(checked).toFixed(1)} | ${median(bare).toFixed(1)} |`);
}
