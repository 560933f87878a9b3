import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { pino } from 'pino';
import type { IssuerConfig } from '../../src/config/types.js';
import type { GatewayServices } from '../../src/pipeline/runtime.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

/** A frozen clock: tests move it by hand. */
export interface Clock {
  now: number;
}

export const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

export function testServices(clock: Clock = { now: T0 }): GatewayServices & { clock: Clock } {
  return { log: pino({ level: 'silent' }), metrics: createMetrics(), now: () => clock.now, clock };
}

export function issuerConfig(overrides: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    name: 'main',
    issuer: 'https://id.example.test',
    jwksUri: 'https://id.example.test/jwks',
    discovery: false,
    audiences: ['https://api.example.test'],
    algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'],
    clockSkew: 60_000,
    requiredClaims: [],
    maxTokenSize: 8192,
    jwksRefresh: 300_000,
    jwksCooldown: 30_000,
    fetchTimeout: 2_000,
    maxResponseSize: 512 * 1024,
    ...overrides,
  };
}

export interface TestKey {
  kid: string;
  alg: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public JWK as published (kid, alg, use). */
  jwk: Record<string, unknown>;
}

const cache = new Map<string, TestKey>();

/** A key pair for `alg`, generated once per test process per kid. */
export function testKey(alg: string, kid = `${alg.toLowerCase()}-1`, extra: Record<string, unknown> = {}): TestKey {
  const id = `${alg}|${kid}|${JSON.stringify(extra)}`;
  const hit = cache.get(id);
  if (hit) return hit;
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  if (alg.startsWith('RS') || alg.startsWith('PS')) pair = generateKeyPairSync('rsa', { modulusLength: (extra.bits as number) ?? 2048, publicExponent: (extra.e as number) ?? 65537 });
  else if (alg === 'ES256') pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  else if (alg === 'ES384') pair = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  else if (alg === 'ES512') pair = generateKeyPairSync('ec', { namedCurve: 'P-521' });
  else if (alg === 'EdDSA' || alg === 'Ed25519') pair = generateKeyPairSync('ed25519');
  else throw new Error(`no test key for ${alg}`);
  const { bits: _b, e: _e, ...jwkExtra } = extra;
  const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig', ...jwkExtra };
  const key = { kid, alg, ...pair, jwk };
  cache.set(id, key);
  return key;
}

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Sign any header and payload (hostile tokens included) with node:crypto. */
export function signJws(header: Record<string, unknown>, payload: unknown, key: KeyObject, alg = String(header.alg)): string {
  const input = `${b64(header)}.${b64(payload)}`;
  let signature: Buffer;
  if (alg.startsWith('RS')) signature = sign(`sha${alg.slice(2)}`, Buffer.from(input), key);
  else if (alg.startsWith('PS')) signature = sign(`sha${alg.slice(2)}`, Buffer.from(input), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  else if (alg.startsWith('ES')) signature = sign(`sha${alg === 'ES512' ? 512 : alg.slice(2)}`, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else signature = sign(null, Buffer.from(input), key);
  return `${input}.${signature.toString('base64url')}`;
}

/** Standard valid claims at `now` (ms). */
export function claimsAt(now: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const s = Math.floor(now / 1000);
  return {
    iss: 'https://id.example.test',
    sub: 'user-1',
    aud: 'https://api.example.test',
    iat: s,
    nbf: s,
    exp: s + 300,
    scope: 'orders:read profile',
    client_id: 'app',
    jti: 'j1',
    ...overrides,
  };
}

/** A valid token signed with `key`; header and claims overridable (a value `undefined` removes it). */
export function mint(key: TestKey, now: number, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  const h: Record<string, unknown> = { alg: key.alg, kid: key.kid, typ: 'at+jwt', ...header };
  const c = claimsAt(now, claims);
  for (const [k, v] of Object.entries(h)) if (v === undefined) delete h[k];
  for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
  return signJws(h, c, key.privateKey, key.alg);
}

export function jwks(...keys: (TestKey | Record<string, unknown>)[]): { keys: Record<string, unknown>[] } {
  return { keys: keys.map((k) => ('jwk' in k && 'privateKey' in k ? (k as TestKey).jwk : (k as Record<string, unknown>))) };
}

/**
 * A forgery that keeps a real token's header and signature around other claims (the claims
 * change, the signature does not match them): it ends exactly like the real token.
 */
export function withClaims(token: string, change: Record<string, unknown>): string {
  const [header, payload, signature] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
  return `${header}.${Buffer.from(JSON.stringify({ ...claims, ...change })).toString('base64url')}.${signature}`;
}
