// Micro-benchmark of the JWT hot path (issue 8 "hot path"): `jose` jwtVerify against gatehouse's
// synchronous path (strict parse + cached KeyObject + one crypto.verify), and a verified-token
// cache hit, for RS256, ES256 and EdDSA on the same keys and tokens.
//
//   npx vitest bench --run bench/jwt-verify.bench.ts
import { createLocalJWKSet, jwtVerify } from 'jose';
import { bench, describe } from 'vitest';
import { createJwtVerifier, parseJwt } from '../src/authn/jwt.js';
import { TokenCache } from '../src/authn/token-cache.js';
import { issuerConfig, jwks, mint, testKey, testServices } from '../test/authn/jwt-fixtures.js';

const now = Date.now();
for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
  const key = testKey(alg);
  const token = mint(key, now);
  const issuer = issuerConfig();
  const services = testServices({ now });
  const uncached = createJwtVerifier(issuer, services, { loadKeys: async () => jwks(key) });
  const cache = new TokenCache(10_000);
  const cached = createJwtVerifier(issuer, services, { loadKeys: async () => jwks(key), cache });
  await uncached.start();
  await cached.start();
  await cached.verify(token);
  const local = createLocalJWKSet(jwks(key) as never);
  const options = { issuer: issuer.issuer, audience: issuer.audiences, algorithms: [alg] };

  describe(alg, () => {
    bench('jose jwtVerify (no cache)', async () => {
      await jwtVerify(token, local, options);
    });
    bench('gatehouse sync verify (no cache)', () => {
      const parsed = parseJwt(token, 8192);
      if (!parsed.ok) throw parsed.error;
      const result = uncached.tryVerifyParsed(parsed.value, now);
      if (!result?.ok) throw new Error('not ok');
    });
    bench('gatehouse cache hit', () => {
      if (!cache.get(token, now)) throw new Error('miss');
    });
  });
}
