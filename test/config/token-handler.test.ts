import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const KEY = randomBytes(32).toString('base64');

function yaml(tokenHandler: string, routes = "  - { name: orders, path: /orders, upstream: api, auth: cookie }"): string {
  return `
listen: { port: 0 }
issuers:
  - { name: main, issuer: 'https://login.example.com', discovery: true, audiences: [api] }
upstreams:
  - { name: api, url: 'http://127.0.0.1:9' }
tokenHandler:
${tokenHandler}
routes:
${routes}
`;
}

const BASE = `  issuer: main
  clientId: spa
  clientSecret: s
  redirectUri: https://www.example.com/callback
  scope: openid profile
  trustedOrigins: ['https://www.example.com']
  cookieKeys: ['${KEY}']`;

function issues(text: string): string[] {
  try {
    loadConfigText(text, 'gatehouse.yaml', {});
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path} ${i.message}`);
    throw err;
  }
  return [];
}

describe('tokenHandler config', () => {
  it('rejects a cookie key of the wrong length, naming the key and its line', () => {
    const text = yaml(BASE.replace(KEY, randomBytes(31).toString('base64')));
    expect(issues(text)).toEqual([expect.stringMatching(/^tokenHandler\.cookieKeys\[0\] decodes to 31 bytes/)]);
    expect(() => loadConfigText(text, 'gatehouse.yaml', {})).toThrow(/^gatehouse\.yaml:14:\d+ tokenHandler\.cookieKeys\[0\]/);
  });

  it('rejects a cookie key that is not base64', () => {
    expect(issues(yaml(BASE.replace(KEY, 'not a key')))).toEqual([expect.stringMatching(/cookieKeys\[0\] is not base64/)]);
  });

  it('rejects a trusted origin with a path, and a plain-http origin off loopback', () => {
    const found = issues(yaml(BASE.replace("['https://www.example.com']", "['https://www.example.com/app', 'http://www.example.com']")));
    expect(found).toEqual([
      expect.stringMatching(/^tokenHandler\.trustedOrigins\[0\] must be an origin only/),
      expect.stringMatching(/^tokenHandler\.trustedOrigins\[1\] must be https/),
    ]);
  });

  it('rejects an unknown issuer', () => {
    expect(issues(yaml(BASE.replace('issuer: main', 'issuer: other')))).toEqual([expect.stringMatching(/^tokenHandler\.issuer names no issuer/)]);
  });

  it('rejects a scope without openid', () => {
    expect(issues(yaml(BASE.replace('scope: openid profile', 'scope: profile')))).toEqual([expect.stringMatching(/^tokenHandler\.scope must include openid/)]);
  });

  it('rejects a __Host- prefix together with cookieDomain', () => {
    expect(issues(yaml(`${BASE}\n  cookieDomain: example.com\n  cookiePrefix: __Host-app`))).toEqual([
      expect.stringMatching(/^tokenHandler\.cookiePrefix cannot start with __Host-/),
    ]);
  });

  it('rejects a route under the agent base path', () => {
    expect(issues(yaml(BASE, '  - { name: th, path: /tokenhandler/x, upstream: api }'))).toEqual([expect.stringMatching(/^routes\[0\]\.path is under tokenHandler\.basePath/)]);
  });

  it('rejects a missing client secret for a confidential client method', () => {
    expect(issues(yaml(`${BASE.replace('  clientSecret: s\n', '')}\n  tokenEndpointAuthMethod: client_secret_post`))).toEqual([
      expect.stringMatching(/^tokenHandler\.clientSecret is needed/),
    ]);
  });

  it('rejects cookie routes without a tokenHandler section', () => {
    const text = yaml(BASE).replace(/tokenHandler:\n(  .*\n)+/, '');
    expect(issues(text)).toEqual([expect.stringMatching(/^routes\[0\]\.auth needs the tokenHandler section/)]);
  });

  it('applies the defaults', () => {
    const config = loadConfigText(yaml(BASE), 'gatehouse.yaml', {});
    expect(config.tokenHandler).toMatchObject({
      basePath: '/tokenhandler',
      cookiePrefix: '__Host-gh',
      csrfHeader: 'x-gatehouse-csrf',
      tokenEndpointAuthMethod: 'client_secret_basic',
      loginStateTtl: 600_000,
      sessionTtl: 8 * 3_600_000,
      trustedOrigins: ['https://www.example.com'],
    });
    const withDomain = loadConfigText(yaml(`${BASE}\n  cookieDomain: example.com`), 'gatehouse.yaml', {});
    expect(withDomain.tokenHandler?.cookiePrefix).toBe('__Secure-gh');
  });

  it('accepts the contract keys of the issue', () => {
    const text = yaml(`  basePath: /tokenhandler
  issuer: main
  clientId: spa
  clientSecret: \${SPA_CLIENT_SECRET}
  redirectUri: https://www.example.com/callback
  postLogoutRedirectUri: https://www.example.com/
  scope: openid profile orders:read
  trustedOrigins: [https://www.example.com]
  cookieKeys:
    - \${COOKIE_KEY}`);
    const config = loadConfigText(text, 'gatehouse.yaml', { SPA_CLIENT_SECRET: 'x', COOKIE_KEY: KEY });
    expect(config.tokenHandler?.cookieKeys).toEqual([KEY]);
    expect(config.tokenHandler?.postLogoutRedirectUri).toBe('https://www.example.com/');
  });

  it('loads the contract YAML of the issue verbatim, variables in flow sequences included', () => {
    const text = `
listen: { port: 0 }
issuers:
  - { name: main, issuer: 'https://login.example.com', discovery: true, audiences: [api] }
upstreams:
  - { name: api, url: 'http://127.0.0.1:9' }
tokenHandler:
  basePath: /tokenhandler           # the agent's endpoints below
  issuer: main                      # an entry of \`issuers\` (discovery gives its endpoints)
  clientId: spa
  clientSecret: \${SPA_CLIENT_SECRET}
  redirectUri: https://www.example.com/callback
  postLogoutRedirectUri: https://www.example.com/
  scope: openid profile orders:read
  trustedOrigins: [https://www.example.com]
  cookieKeys: [\${COOKIE_KEY}]       # base64 of 32 random bytes; first encrypts, all decrypt
routes:
  - name: orders
    path: /orders
    upstream: api
    auth: cookie                    # accept the token-handler cookie (bearer stays accepted unless \`auth: cookie-only\`)
    scopes: [orders:read]
`;
    const config = loadConfigText(text, 'gatehouse.yaml', { SPA_CLIENT_SECRET: 'sec', COOKIE_KEY: KEY });
    expect(config.tokenHandler?.cookieKeys).toEqual([KEY]);
    expect(config.tokenHandler?.clientSecret).toBe('sec');
    expect(config.routes[0]?.auth).toBe('cookie');
  });

  it('keeps variables inert: a value cannot add YAML structure, $$ stays a literal $, an unset one is named', () => {
    const text = yaml(BASE.replace(`cookieKeys: ['${KEY}']`, () => 'cookieKeys: [${A}, "$${B}"]'));
    expect(() => loadConfigText(text, 'gatehouse.yaml', { A: `${KEY}, injected: true` })).toThrow(/cookieKeys\[0\] is not base64/);
    expect(() => loadConfigText(text, 'gatehouse.yaml', { A: KEY })).toThrow(/cookieKeys\[1\] is not base64/); // the literal "${B}"
    expect(() => loadConfigText(text, 'gatehouse.yaml', {})).toThrow(/uses \$\{A\} but the environment variable A is not set/);
  });
});

describe('senderConstrained on token-handler routes', () => {
  it('refuses dpop or any on a cookie-only route (a cookie token comes with no DPoP proof), and takes mtls or a route that also takes headers', () => {
    for (const value of ['dpop', 'any']) {
      expect(issues(yaml(BASE, `  - { name: orders, path: /orders, upstream: api, auth: cookie-only, senderConstrained: ${value} }`)).join('\n')).toMatch(
        new RegExp(`routes\\[0\\]\\.senderConstrained ${value} cannot be met on a cookie-only route`),
      );
    }
    expect(issues(yaml(BASE, '  - { name: orders, path: /orders, upstream: api, auth: cookie-only, senderConstrained: mtls }'))).toEqual([]);
    expect(issues(yaml(BASE, '  - { name: orders, path: /orders, upstream: api, auth: cookie, senderConstrained: dpop }'))).toEqual([]);
  });
});
