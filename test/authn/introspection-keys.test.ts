import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { acquireGatewayKeys } from '../../src/authn/gateway-keys.js';
import { createMinter } from '../../src/authn/mint.js';
import { createPhantomArea } from '../../src/authn/phantom-area.js';
import { existsSync } from 'node:fs';
import { opaqueConfig, testServices } from './introspection-fixtures.js';
import type { GatewayTokenConfig } from '../../src/config/types.js';

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

function gatewayConfig(over: Partial<GatewayTokenConfig> = {}, baseDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-keys-'))) {
  return {
    baseDir,
    gateway: { issuer: 'urn:gatehouse', signingKeys: [], tokenTtl: 300_000, algorithm: 'ES256', keyRotationGrace: 24 * HOUR, realm: 'gatehouse', ...over } as GatewayTokenConfig,
  };
}

function published(json: string): JWK[] {
  return (JSON.parse(json) as { keys: JWK[] }).keys;
}

describe('generated gateway keys', () => {
  it('generates a key on first start, persists it with mode 0600 under .gatehouse/keys of the config directory, and publishes only its public half', async () => {
    const config = gatewayConfig();
    const keys = acquireGatewayKeys(config, () => T0);
    await keys.ready();
    const dir = path.join(config.baseDir, '.gatehouse/keys');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files).toEqual([`${keys.signingKey().kid}.json`]);
    expect(statSync(path.join(dir, files[0]!)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o077).toBe(0);
    const jwks = published(keys.jwksJson(T0));
    expect(jwks).toHaveLength(1);
    expect(jwks[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: keys.signingKey().kid });
    expect(jwks[0]!.d).toBeUndefined();
    keys.release();
  });

  it('loads the same key on the next start (no new key per restart)', async () => {
    const config = gatewayConfig();
    const first = acquireGatewayKeys(config, () => T0);
    await first.ready();
    const kid = first.signingKey().kid;
    first.release();
    const second = acquireGatewayKeys(config, () => T0 + HOUR);
    await second.ready();
    expect(second.signingKey().kid).toBe(kid);
    second.release();
  });

  it('shares one instance between holders of the same key source', async () => {
    const config = gatewayConfig();
    const a = acquireGatewayKeys(config);
    const b = acquireGatewayKeys(config);
    expect(a).toBe(b);
    await Promise.all([a.ready(), b.ready()]);
    expect(readdirSync(path.join(config.baseDir, '.gatehouse/keys')).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    a.release();
    b.release();
  });

  it('rotates: the new key signs, the previous one stays published for keyRotationGrace, then goes', async () => {
    const clock = { now: T0 };
    const config = gatewayConfig({ keyRotationGrace: 2 * HOUR, keyDirectory: 'keys' });
    const keys = acquireGatewayKeys(config, () => clock.now);
    await keys.ready();
    const minter = createMinter(keys, config.gateway);
    const before = await minter.mint({ sub: 'alice', exp: T0 / 1000 + 600 }, 'aud', clock.now);
    const oldKid = keys.signingKey().kid;
    clock.now += HOUR;
    const rotated = await keys.rotate();
    expect(rotated.kid).not.toBe(oldKid);
    expect(keys.signingKey().kid).toBe(rotated.kid);
    const jwks = published(keys.jwksJson(clock.now));
    expect(jwks.map((k) => k.kid).sort()).toEqual([oldKid, rotated.kid].sort());
    // A JWT minted before the rotation still verifies against the published set.
    await jwtVerify(before.jwt, createLocalJWKSet({ keys: jwks }), { currentDate: new Date(T0) });
    clock.now += 2 * HOUR;
    expect(published(keys.jwksJson(clock.now)).map((k) => k.kid)).toEqual([rotated.kid]);
    keys.release();

    // A restart after the grace period deletes the retired key file.
    const again = acquireGatewayKeys(config, () => clock.now);
    await again.ready();
    expect(again.signingKey().kid).toBe(rotated.kid);
    expect(readdirSync(path.join(config.baseDir, 'keys')).filter((f) => f.endsWith('.json'))).toEqual([`${rotated.kid}.json`]);
    again.release();
  });

  it('generates a key of the configured algorithm (EdDSA)', async () => {
    const keys = acquireGatewayKeys(gatewayConfig({ algorithm: 'EdDSA' }));
    await keys.ready();
    expect(published(keys.jwksJson(Date.now()))[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA' });
    keys.release();
  });
});

describe('scheduled rotation of generated keys', () => {
  it('publishes the new key before it signs, then switches, and the old one leaves after the grace period', async () => {
    const clock = { now: T0 };
    const config = gatewayConfig({ keyRotationGrace: 2 * HOUR });
    const keys = acquireGatewayKeys(config, () => clock.now);
    await keys.ready();
    const oldKid = keys.signingKey().kid;
    expect(await keys.refresh({ interval: 24 * HOUR, activateAfter: 180_000 })).toBeNull();
    clock.now += 24 * HOUR;
    const next = (await keys.refresh({ interval: 24 * HOUR, activateAfter: 180_000 }))!;
    expect(next.kid).not.toBe(oldKid);
    // Published at once, signing only after the activation delay.
    expect(published(keys.jwksJson(clock.now)).map((k) => k.kid).sort()).toEqual([oldKid, next.kid].sort());
    expect(keys.signingKey().kid).toBe(oldKid);
    clock.now += 180_000;
    expect(keys.signingKey().kid).toBe(next.kid);
    // Not due again right away (no second rotation).
    expect(await keys.refresh({ interval: 24 * HOUR, activateAfter: 180_000 })).toBeNull();
    clock.now += 2 * HOUR;
    expect(published(keys.jwksJson(clock.now)).map((k) => k.kid)).toEqual([next.kid]);
    keys.release();
  });

  it('lets another process (another instance on the same directory) adopt a rotation on refresh, without rotating again', async () => {
    const clock = { now: T0 };
    const baseDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-keys-'));
    const a = acquireGatewayKeys(gatewayConfig({}, baseDir), () => clock.now);
    const b = acquireGatewayKeys(gatewayConfig({}, baseDir), () => clock.now);
    expect(a).not.toBe(b);
    await a.ready();
    await b.ready();
    expect(b.signingKey().kid).toBe(a.signingKey().kid);
    clock.now += 31 * 24 * HOUR;
    const rotated = (await a.refresh({ interval: 30 * 24 * HOUR, activateAfter: 60_000 }))!;
    expect(await b.refresh({ interval: 30 * 24 * HOUR, activateAfter: 60_000 })).toBeNull();
    expect(published(b.jwksJson(clock.now)).map((k) => k.kid)).toContain(rotated.kid);
    clock.now += 60_000;
    expect(b.signingKey().kid).toBe(rotated.kid);
    expect(readdirSync(path.join(baseDir, '.gatehouse/keys')).filter((f) => f.endsWith('.json'))).toHaveLength(2);
    a.release();
    b.release();
  });
});

describe('configured gateway keys', () => {
  it('signs with the first configured key (PEM) and publishes every configured key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-keys-'));
    const a = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const b = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(path.join(dir, 'new.pem'), a.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    writeFileSync(path.join(dir, 'old.jwk'), JSON.stringify({ ...b.privateKey.export({ format: 'jwk' }), kid: 'old-key' }));
    const config = gatewayConfig({ signingKeys: ['new.pem', 'old.jwk'] }, dir);
    const keys = acquireGatewayKeys(config);
    await keys.ready();
    const jwks = published(keys.jwksJson(Date.now()));
    expect(jwks.map((k) => k.kid)).toEqual([keys.signingKey().kid, 'old-key']);
    const minted = await createMinter(keys, config.gateway).mint({ sub: 'x' }, 'aud', Date.now());
    await jwtVerify(minted.jwt, a.publicKey);
    expect(readdirSync(dir).some((f) => f === '.gatehouse')).toBe(false);
    await expect(keys.rotate()).rejects.toThrow(/configured/);
    keys.release();
  });

  it('refuses a configured key that cannot sign with the configured algorithm', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-keys-'));
    writeFileSync(path.join(dir, 'rsa.pem'), generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const keys = acquireGatewayKeys(gatewayConfig({ signingKeys: ['rsa.pem'], algorithm: 'ES256' }, dir));
    await expect(keys.ready()).rejects.toThrow(/cannot sign ES256/);
    keys.release();
  });

  it('refuses an unreadable or non-key file with its name', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-keys-'));
    writeFileSync(path.join(dir, 'junk.pem'), 'not a key');
    const missing = acquireGatewayKeys(gatewayConfig({ signingKeys: ['absent.pem'] }, dir));
    await expect(missing.ready()).rejects.toThrow(/absent\.pem cannot be read/);
    missing.release();
    const junk = acquireGatewayKeys(gatewayConfig({ signingKeys: ['junk.pem'] }, dir));
    await expect(junk.ready()).rejects.toThrow(/junk\.pem is not a private key/);
    junk.release();
  });
});

describe('the phantom area', () => {
  it('writes no key at compile time (gatehouse validate), generates on start, and serves the JWKS on the admin listener', async () => {
    const config = opaqueConfig({ issuer: 'http://127.0.0.1:1', url: 'http://127.0.0.1:1/introspect' }, '');
    const dir = config.gateway.keyDirectory!;
    const area = await createPhantomArea(config, testServices(Date.now()));
    expect(area.issues).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    await area.start!();
    expect(existsSync(dir)).toBe(true);
    expect(area.readiness!().ready).toBe(true);
    let status = 0;
    let body = '';
    const res = {
      writeHead(code: number) {
        status = code;
      },
      end(text?: string) {
        body = text ?? '';
      },
    };
    const handled = await area.handleAdmin!({ url: '/.well-known/jwks.json', method: 'GET' } as never, res as never);
    expect(handled).toBe(true);
    expect(status).toBe(200);
    expect(published(body)).toHaveLength(1);
    expect(await area.handleAdmin!({ url: '/other', method: 'GET' } as never, res as never)).toBe(false);
    await area.close!();
  });

  it('reports an unreadable configured key as a config issue', async () => {
    const config = opaqueConfig({ issuer: 'http://127.0.0.1:1', url: 'http://127.0.0.1:1/introspect' }, '');
    config.gateway.signingKeys = ['absent.pem'];
    const area = await createPhantomArea(config, testServices(Date.now()));
    expect(area.issues?.[0]).toMatchObject({ path: 'gateway.signingKeys' });
    expect(area.issues?.[0]?.message).toMatch(/absent\.pem/);
    await area.close!();
  });

  it('is absent when no issuer mints', async () => {
    const config = opaqueConfig({ issuer: 'http://127.0.0.1:1', url: 'http://127.0.0.1:1/introspect' }, 'accept: application/jwt', { issuer: 'jwksUri: http://127.0.0.1:1/jwks' });
    const area = await createPhantomArea(config, testServices(Date.now()));
    expect(area.handleAdmin).toBeUndefined();
  });
});
