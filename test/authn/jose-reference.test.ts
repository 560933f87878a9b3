import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createJwtVerifier } from '../../src/authn/jwt.js';
import { issuerConfig, T0, testServices } from './jwt-fixtures.js';

/**
 * `jose` as the reference: tokens jose signs, for every algorithm gatehouse supports, verify
 * with gatehouse's own path, and tokens jose refuses (altered payload, wrong key, expired,
 * wrong audience) gatehouse refuses too.
 */
const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
const keys = new Map<string, { privateKey: CryptoKey; jwk: Record<string, unknown> }>();

beforeAll(async () => {
  for (const alg of ALGS) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    keys.set(alg, { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `k-${alg}`, alg, use: 'sig' } });
  }
});

const issuer = issuerConfig();
const sec = Math.floor(T0 / 1000);

async function signed(alg: string, claims: Record<string, unknown> = {}, kid = `k-${alg}`) {
  return new SignJWT({ iss: issuer.issuer, aud: issuer.audiences[0], sub: 's', iat: sec, exp: sec + 300, scope: 'a b', client_id: 'c', ...claims })
    .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
    .sign(keys.get(alg)!.privateKey);
}

async function both(token: string): Promise<[boolean, boolean]> {
  const set = { keys: [...keys.values()].map((k) => k.jwk) };
  const services = testServices();
  const verifier = createJwtVerifier(issuer, services, { loadKeys: async () => set });
  const ours = (await verifier.verify(token)).ok;
  await verifier.close();
  let theirs: boolean;
  try {
    await jwtVerify(token, createLocalJWKSet(set as never), {
      issuer: issuer.issuer,
      audience: issuer.audiences,
      currentDate: new Date(T0),
      clockTolerance: issuer.clockSkew / 1000,
    });
    theirs = true;
  } catch {
    theirs = false;
  }
  return [ours, theirs];
}

describe('gatehouse agrees with jose', () => {
  it.each(ALGS)('accepts a %s token signed by jose', async (alg) => {
    expect(await both(await signed(alg))).toEqual([true, true]);
  });

  it.each(ALGS)('refuses a %s token whose payload was altered after signing', async (alg) => {
    const [h, , s] = (await signed(alg)).split('.');
    const p = Buffer.from(JSON.stringify({ iss: issuer.issuer, aud: issuer.audiences[0], exp: sec + 300, sub: 'admin' })).toString('base64url');
    expect(await both(`${h}.${p}.${s}`)).toEqual([false, false]);
  });

  it.each(ALGS)('refuses a %s token that names the key of another algorithm', async (alg) => {
    const other = alg === 'ES256' ? 'ES384' : 'ES256';
    expect(await both(await signed(alg, {}, `k-${other}`))).toEqual([false, false]);
  });

  it('refuses an expired token, like jose', async () => {
    expect(await both(await signed('ES256', { exp: sec - 3600 }))).toEqual([false, false]);
  });

  it('refuses a token for another audience, like jose', async () => {
    expect(await both(await signed('ES256', { aud: 'https://elsewhere' }))).toEqual([false, false]);
  });
});
