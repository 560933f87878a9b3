import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { issuesOf } from '../helpers/config.js';

/** The `dpop` section (docs/tokens.md, "DPoP proofs"): defaults, and every bad value named by file, line and key. */
const BASE = `listen: { port: 0 }
issuers: [ { name: main, issuer: 'https://id.example.test', jwksUri: 'https://id.example.test/jwks', audiences: [api] } ]
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes: [ { name: any, path: /any, upstream: api } ]
`;


describe('dpop settings', () => {
  it('default to asymmetric algorithms, a 60 s proof lifetime, 5 s of clock skew and 200,000 remembered proofs', () => {
    expect(loadConfigText(BASE, 'gatehouse.yaml', {}).dpop).toEqual({
      algorithms: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA', 'Ed25519'],
      proofMaxAge: 60_000,
      clockSkew: 5_000,
      maxProofs: 200_000,
      nonce: null,
    });
  });

  it('take durations with units and an algorithm list', () => {
    const config = loadConfigText(`${BASE}dpop:\n  algorithms: [ES256]\n  proofMaxAge: 2m\n  clockSkew: 0\n  maxProofs: 5000\n`, 'gatehouse.yaml', {});
    expect(config.dpop).toEqual({ algorithms: ['ES256'], proofMaxAge: 120_000, clockSkew: 0, maxProofs: 5000, nonce: null });
    expect(loadConfigText(`${BASE}dpop:\n  nonce: true\n`, 'gatehouse.yaml', {}).dpop.nonce).toEqual({ lifetime: 300_000, secret: null });
  });

  it.each<[string, string, RegExp]>([
    ['a symmetric algorithm', 'algorithms: [HS256]', /dpop\.algorithms\[0\]/],
    ['none', 'algorithms: [none]', /dpop\.algorithms\[0\]/],
    ['an empty algorithm list', 'algorithms: []', /dpop\.algorithms/],
    ['a proof lifetime of 0', 'proofMaxAge: 0', /dpop\.proofMaxAge must be at least 1s: 0 would refuse every proof/],
    ['a proof lifetime over 10 minutes', 'proofMaxAge: 1h', /dpop\.proofMaxAge must be at most 10m/],
    ['a clock skew over 5 minutes', 'clockSkew: 6m', /dpop\.clockSkew must be at most 5m/],
    ['a replay memory under 1000 proofs', 'maxProofs: 10', /dpop\.maxProofs/],
    ['an unknown key', 'nonces: true', /dpop.*nonces/],
  ])('refuses %s, naming the file, line and key', (_what, line, message) => {
    const issues = issuesOf(`${BASE}dpop:\n  ${line}\n`);
    const found = issues.find((i) => message.test(`${i.path} ${i.message}`));
    expect(found, JSON.stringify(issues)).toBeDefined();
    // The key's own line (6), or the section's (5) for a key that is not there.
    expect(found).toMatchObject({ file: 'gatehouse.yaml', line: expect.toSatisfy((n: number) => n === 5 || n === 6) });
  });
});

describe('routes[].senderConstrained', () => {
  it('takes dpop, mtls or any', () => {
    for (const value of ['dpop', 'mtls', 'any']) {
      const config = loadConfigText(BASE.replace('upstream: api }', `upstream: api, senderConstrained: ${value} }`), 'gatehouse.yaml', {});
      expect(config.routes[0]!.senderConstrained).toBe(value);
    }
  });

  it.each<[string, string, RegExp]>([
    ['another value', 'senderConstrained: yes', /routes\[0\]\.senderConstrained must be equal to one of the allowed values|routes\[0\]\.senderConstrained/],
    ['a public route (it checks no token)', 'public: true, senderConstrained: any', /routes\[0\]\.senderConstrained cannot be set on a public route/],
  ])('refuses %s', (_what, fields, message) => {
    const issues = issuesOf(BASE.replace('upstream: api }', `upstream: api, ${fields} }`));
    expect(issues.map((i) => `${i.path} ${i.message}`).join('\n')).toMatch(message);
  });
});
