import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';

describe('examples/phantom-tokens.yaml', () => {
  it('loads: one JWT issuer, one opaque issuer found by discovery, minting with scheduled key rotation', () => {
    const config = loadConfigFile('examples/phantom-tokens.yaml', { INTROSPECTION_SECRET: 'example-secret' });
    const opaque = config.issuers.find((i) => i.name === 'login-opaque')!;
    expect(opaque.introspection).toMatchObject({ clientId: 'gateway', authMethod: 'client_secret_basic', accept: 'application/json', cacheTtl: 30_000, timeout: 2_000 });
    expect(opaque.discovery).toBe(true);
    expect(config.gateway).toMatchObject({ issuer: 'https://gateway.example.com', tokenTtl: 120_000, keyRotationInterval: 30 * 86_400_000 });
    expect(config.redis?.url).toBe('redis://redis.internal:6379');
  });
});
