import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

function issuesOf(issuerYaml: string): string[] {
  try {
    loadConfigText(`listen: { port: 0 }
issuers:
  - ${issuerYaml}
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes: [ { name: r, path: /, upstream: api } ]
`);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path} ${i.message}`);
    throw err;
  }
}

const base = 'name: main, issuer: https://id.example.test, audiences: [api]';

describe('issuer config', () => {
  it('accepts an issuer with an https jwksUri and asymmetric algorithms', () => {
    expect(issuesOf(`{ ${base}, jwksUri: https://id.example.test/jwks, algorithms: [RS256, ES256, EdDSA] }`)).toEqual([]);
  });
  it.each([['none'], ['HS256'], ['HS384'], ['HS512']])('refuses algorithm %s', (alg) => {
    const issues = issuesOf(`{ ${base}, jwksUri: https://id.example.test/jwks, algorithms: [${alg}] }`);
    expect(issues.join('\n')).toMatch(/issuers\[0\]\.algorithms\[0\]/);
  });
  it('refuses a plain-http jwksUri on a non-loopback host', () => {
    expect(issuesOf(`{ ${base}, jwksUri: http://id.example.test/jwks }`).join('\n')).toMatch(/issuers\[0\]\.jwksUri must be an https URL/);
  });
  it('accepts a plain-http jwksUri on loopback (development and tests)', () => {
    expect(issuesOf(`{ ${base}, jwksUri: http://127.0.0.1:8080/jwks }`)).toEqual([]);
  });
  it('refuses discovery on a plain-http issuer that is not loopback', () => {
    expect(issuesOf(`{ name: main, issuer: http://id.example.test, audiences: [api], discovery: true }`).join('\n')).toMatch(/issuers\[0\]\.issuer must be an https URL/);
  });
  it('refuses an issuer without audiences', () => {
    expect(issuesOf(`{ name: main, issuer: https://id.example.test, jwksUri: https://id.example.test/jwks }`).join('\n')).toMatch(/audiences/);
  });
  it('refuses an issuer without a source of keys', () => {
    expect(issuesOf(`{ ${base} }`).join('\n')).toMatch(/needs a source of keys/);
  });
});
