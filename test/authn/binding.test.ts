import { createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateThumbprint, checkConfirmation, checkSender, type BindingCodes } from '../../src/authn/binding.js';
import type { DpopChecker } from '../../src/authn/dpop.js';
import { createAuthnArea } from '../../src/authn/index.js';
import { createJwtVerifier } from '../../src/authn/jwt.js';
import { TokenCache } from '../../src/authn/token-cache.js';
import { loadConfigText } from '../../src/config/load.js';
import type { RequestContext, Stage } from '../../src/pipeline/context.js';
import type { AreaRuntime } from '../../src/pipeline/runtime.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { issuerConfig, jwks, mint, T0, testKey, testServices } from './jwt-fixtures.js';

/** Sender-constrained tokens (RFC 7800 `cnf`, RFC 8705, RFC 9449): the rules both paths share. */
const CODES: BindingCodes = { malformed: 'GH_ERR_JWT_CLAIM_INVALID', constrained: 'GH_ERR_JWT_SENDER_CONSTRAINED' };

const derA = Buffer.from('certificate A, as DER');
const derB = Buffer.from('certificate B, as DER');
const thumbA = createHash('sha256').update(derA).digest('base64url');
const certOf = (raw: Buffer) => ({ raw }) as unknown as PeerCertificate;
/** The same 32 bytes as `thumbA`, spelled with a non-zero unused low bit in the last character. */
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const nonCanonicalA = thumbA.slice(0, 42) + ALPHABET[ALPHABET.indexOf(thumbA[42]!) | 1]!;

describe('checkConfirmation (when the token is verified)', () => {
  it.each<[string, unknown, string]>([
    ['accepts a token without cnf', undefined, 'ok'],
    ['accepts an empty cnf (no confirmation method)', {}, 'ok'],
    ['accepts a certificate thumbprint (x5t#S256)', { 'x5t#S256': thumbA }, 'ok'],
    ['refuses a cnf that is a string', 'x5t', CODES.malformed],
    ['refuses a cnf that is null', null, CODES.malformed],
    ['refuses a cnf that is an array', [{ 'x5t#S256': thumbA }], CODES.malformed],
    ['refuses a cnf that is a number', 1, CODES.malformed],
    ['refuses an x5t#S256 that is not a string', { 'x5t#S256': 42 }, CODES.malformed],
    ['refuses an x5t#S256 that is not 32 bytes of base64url', { 'x5t#S256': thumbA.slice(0, 42) }, CODES.malformed],
    ['refuses an x5t#S256 with padding or other characters', { 'x5t#S256': `${thumbA.slice(0, 42)}=` }, CODES.malformed],
    ['accepts a DPoP key thumbprint (jkt; the proof is checked on every request)', { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' }, 'ok'],
    ['accepts a certificate and a DPoP key binding together', { 'x5t#S256': thumbA, jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' }, 'ok'],
    ['refuses a jkt that is not 32 bytes of base64url', { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4' }, CODES.malformed],
    ['refuses a jkt that is not a string', { jkt: ['0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I'] }, CODES.malformed],
    ['refuses a raw key binding (jwk)', { jwk: { kty: 'EC' } }, CODES.constrained],
    ['refuses a certificate binding next to one it cannot check', { 'x5t#S256': thumbA, jwk: { kty: 'EC' } }, CODES.constrained],
    ['refuses any other member', { kid: 'k' }, CODES.constrained],
  ])('%s', (_name, cnf, code) => {
    expect(checkConfirmation(cnf, CODES)?.code ?? 'ok').toBe(code);
  });

  it('answers 401 invalid_token (an RFC 6750 challenge) with the codes it is given', () => {
    const denial = checkConfirmation({ kid: 'x' }, { malformed: 'GH_ERR_INTROSPECTION_INVALID_RESPONSE', constrained: 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED' })!;
    expect(denial).toMatchObject({ code: 'GH_ERR_INTROSPECTION_SENDER_CONSTRAINED', status: 401, oauthError: 'invalid_token', challenge: true });
  });
});

/** A request context of the Bearer scheme with this certificate. */
const ctxWith = (clientCertificate: PeerCertificate | null | undefined, source: 'header' | 'cookie' = 'header') =>
  ({ clientCertificate, tokenScheme: source === 'header' ? 'Bearer' : null, tokenSource: source, headers: {} }) as unknown as RequestContext;
/** A DPoP checker that must not be reached (the Bearer scheme never asks for a proof). */
const NO_DPOP: DpopChecker = {
  check() {
    throw new Error('no DPoP proof is checked for a Bearer-scheme request');
  },
};

describe('checkSender (on every request)', () => {
  it.each<[string, unknown, PeerCertificate | null | undefined, string, ('header' | 'cookie')?]>([
    ['accepts a certificate-bound token with that certificate', { 'x5t#S256': thumbA }, certOf(derA), 'ok'],
    ['refuses it with another certificate', { 'x5t#S256': thumbA }, certOf(derB), CODES.constrained],
    ['refuses it without a certificate', { 'x5t#S256': thumbA }, null, CODES.constrained],
    ['refuses it when the context has no certificate field', { 'x5t#S256': thumbA }, undefined, CODES.constrained],
    ['refuses it with a certificate object that holds no DER', { 'x5t#S256': thumbA }, {} as PeerCertificate, CODES.constrained],
    ['refuses a non-canonical spelling of the right thumbprint', { 'x5t#S256': nonCanonicalA }, certOf(derA), CODES.constrained],
    ['refuses a binding it cannot check, whatever the certificate', { jwk: { kty: 'EC' } }, certOf(derA), CODES.constrained],
    ['refuses a DPoP-bound token from a token-handler cookie (no proof can come with it)', { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' }, null, 'GH_ERR_DPOP_SCHEME_MISMATCH', 'cookie'],
    ['refuses a DPoP-bound token sent in the Bearer scheme, whatever the certificate', { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' }, certOf(derA), 'GH_ERR_DPOP_SCHEME_MISMATCH'],
    ['refuses a cnf of the wrong shape (never trusts that it was checked before)', 'x5t', certOf(derA), CODES.malformed],
    ['accepts an empty cnf without a certificate', {}, null, 'ok'],
  ])('%s', async (_name, cnf, cert, code, source = 'header') => {
    expect((await checkSender(cnf, ctxWith(cert, source), 'token', CODES, NO_DPOP))?.code ?? 'ok').toBe(code);
  });

  it('computes the thumbprint (base64url SHA-256 of the DER) once per certificate object, that is once per connection', () => {
    let reads = 0;
    const cert = {
      get raw() {
        reads++;
        return derA;
      },
    } as unknown as PeerCertificate;
    expect(certificateThumbprint(cert)).toBe(thumbA);
    expect(checkSender({ 'x5t#S256': thumbA }, ctxWith(cert), 'token', CODES, NO_DPOP)).toBeNull();
    expect(checkSender({ 'x5t#S256': thumbA }, ctxWith(cert), 'token', CODES, NO_DPOP)).toBeNull();
    expect(reads).toBe(1);
  });
});

describe('the JWT verifier', () => {
  const rs = testKey('RS256');
  async function verify(cnf: unknown, cache: TokenCache) {
    const verifier = createJwtVerifier(issuerConfig(), testServices(), { cache, loadKeys: async () => jwks(rs) });
    try {
      const result = await verifier.verify(mint(rs, T0, { cnf }));
      return result.ok ? 'ok' : result.error.code;
    } finally {
      await verifier.close();
    }
  }

  it('refuses a token whose cnf is not an object, as an invalid claim', async () => {
    expect(await verify('bound', new TokenCache(10))).toBe('GH_ERR_JWT_CLAIM_INVALID');
  });

  it('verifies a DPoP-bound token (cnf.jkt; the proof is checked by the authenticate stage on every request)', async () => {
    expect(await verify({ jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' }, new TokenCache(10))).toBe('ok');
  });

  it('refuses a token bound by a method gatehouse cannot check, and never caches it', async () => {
    const cache = new TokenCache(10);
    expect(await verify({ jwk: { kty: 'EC' } }, cache)).toBe('GH_ERR_JWT_SENDER_CONSTRAINED');
    expect(cache.size).toBe(0);
  });

  it('verifies a certificate-bound token (the connection is checked by the authenticate stage)', async () => {
    expect(await verify({ 'x5t#S256': thumbA }, new TokenCache(10))).toBe('ok');
  });
});

describe('the authenticate stage (verified-token cache included)', () => {
  const key = testKey('ES256', 'bind-1');
  let keys: JwksServer;
  let runtime: AreaRuntime;
  let stage: Stage;

  beforeAll(async () => {
    keys = await startJwksServer(jwks(key));
    const config = loadConfigText(`
listen: { port: 0 }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: ${keys.url}, audiences: [https://api.example.test], algorithms: [ES256] }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - { name: any, path: /any, upstream: api }
`);
    runtime = await createAuthnArea(config, testServices({ now: Date.now() }));
    await runtime.start?.();
    stage = runtime.stagesFor!(config.routes[0]!, 0).authenticate!;
  });
  afterAll(async () => {
    await runtime?.close?.();
    await keys?.close();
  });

  async function run(token: string, clientCertificate: PeerCertificate | null): Promise<string> {
    const ctx = { token, tokenSource: 'header', tokenScheme: 'Bearer', clientCertificate, principal: null, headers: {}, query: '', params: {} } as unknown as RequestContext;
    const denial = await stage(ctx);
    if (denial) {
      expect(ctx.principal).toBeNull();
      return denial.code;
    }
    expect(ctx.principal).not.toBeNull();
    return 'ok';
  }

  it('refuses a certificate-bound token from a connection with another certificate, or none', async () => {
    const token = mint(key, Date.now(), { iss: 'https://id.example.test', cnf: { 'x5t#S256': thumbA }, jti: 'first' });
    expect(await run(token, certOf(derB))).toBe('GH_ERR_JWT_SENDER_CONSTRAINED');
    expect(await run(token, null)).toBe('GH_ERR_JWT_SENDER_CONSTRAINED');
    expect(await run(token, certOf(derA))).toBe('ok');
  });

  it('keeps refusing it on a cache hit: accepted with certificate A, then replayed with B or none', async () => {
    const token = mint(key, Date.now(), { iss: 'https://id.example.test', cnf: { 'x5t#S256': thumbA }, jti: 'second' });
    expect(await run(token, certOf(derA))).toBe('ok'); // verified and cached
    expect(await run(token, certOf(derB))).toBe('GH_ERR_JWT_SENDER_CONSTRAINED');
    expect(await run(token, null)).toBe('GH_ERR_JWT_SENDER_CONSTRAINED');
    expect(await run(token, certOf(derA))).toBe('ok');
  });

  it('refuses a DPoP-bound token sent in the Bearer scheme, whatever the connection, from the cache too', async () => {
    const token = mint(key, Date.now(), { iss: 'https://id.example.test', cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } });
    expect(await run(token, certOf(derA))).toBe('GH_ERR_DPOP_SCHEME_MISMATCH');
    expect(await run(token, null)).toBe('GH_ERR_DPOP_SCHEME_MISMATCH');
  });

  it('accepts a token without cnf with or without a certificate, from the cache too', async () => {
    const token = mint(key, Date.now(), { iss: 'https://id.example.test', jti: 'unbound' });
    expect(await run(token, null)).toBe('ok');
    expect(await run(token, certOf(derB))).toBe('ok');
  });
});
