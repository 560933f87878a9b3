import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileClaimCheck, compileClaimRule } from '../../src/authz/claims.js';
import { compileForwardClaims, headerValue } from '../../src/authz/forward-claims.js';
import { createAuthzArea } from '../../src/authz/index.js';
import { compileScopeCheck } from '../../src/authz/scopes.js';
import { compileStepUp } from '../../src/authz/step-up.js';
import { loadConfigFile } from '../../src/config/load.js';
import { StepUpRequired } from '../../src/errors.js';
import type { Principal, RequestContext } from '../../src/pipeline/context.js';
import { testServices } from '../authn/jwt-fixtures.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

function principal(claims: Record<string, unknown>, scopes: string[] = []): Principal {
  return { issuer: 'main', subject: claims.sub as string, claims, scopes: new Set(scopes), kind: 'jwt', upstreamToken: 't', upstreamAuthorization: 'Bearer t' };
}

function ctx(params: Record<string, string> = {}, headers: Record<string, string> = {}, method = 'GET', p = '/x'): RequestContext {
  return { method, path: p, params, headers, query: '', upstreamHeaders: [] } as unknown as RequestContext;
}

describe('scopes', () => {
  const check = compileScopeCheck(['orders:read', 'orders:write'])!;
  it('passes when every route scope is granted', () => {
    expect(check(principal({}, ['orders:read', 'orders:write', 'x']))).toBeNull();
  });
  it('denies with 403 insufficient_scope naming all route scopes when one is missing', () => {
    const denial = check(principal({}, ['orders:read']));
    expect(denial?.status).toBe(403);
    expect(denial?.oauthError).toBe('insufficient_scope');
    expect(denial?.scope).toBe('orders:read orders:write');
  });
  it('is absent (null) for a route without scopes', () => {
    expect(compileScopeCheck([])).toBeNull();
  });
});

describe('claim rules (CEL)', () => {
  it.each([
    ['allows the owner of the object', 'claims.sub == request.params.userId', { sub: 'u1' }, { userId: 'u1' }, {}, true],
    ['denies another user (BOLA)', 'claims.sub == request.params.userId', { sub: 'u1' }, { userId: 'u2' }, {}, false],
    ['compares a claim with a request header', 'claims.tenant == request.headers["x-tenant"]', { tenant: 'acme' }, {}, { 'x-tenant': 'acme' }, true],
    ['denies when the header is missing (evaluation error)', 'claims.tenant == request.headers["x-tenant"]', { tenant: 'acme' }, {}, {}, false],
    ['denies when the claim is missing (evaluation error)', 'claims.tenant == "acme"', {}, {}, {}, false],
    ['supports membership in a list claim', '"admin" in claims.roles', { roles: ['user', 'admin'] }, {}, {}, true],
    ['supports numeric comparisons on JSON numbers', 'claims.level >= 2', { level: 3 }, {}, {}, true],
    ['supports has() for optional claims', '!has(claims.blocked)', {}, {}, {}, true],
    ['supports the method', 'request.method == "GET"', {}, {}, {}, true],
  ])('%s', (_name, source, claims, params, headers, allowed) => {
    const rule = compileClaimRule(source);
    if (typeof rule === 'string') throw new Error(rule);
    const denial = compileClaimCheck([rule])!(ctx(params, headers), principal(claims));
    expect(denial === null).toBe(allowed);
    if (denial) expect(denial.code).toBe('GH_ERR_AUTHZ_CLAIM_DENIED');
  });

  it.each([
    ['refuses a syntax error', 'claims.sub == '],
    ['refuses an unknown variable', 'user.sub == "x"'],
    ['refuses a non-boolean expression', '"a" + "b"'],
  ])('%s at compile time', (_name, source) => {
    expect(typeof compileClaimRule(source)).toBe('string');
  });

  it.each([
    ['false', 'request.headers["x-tenant"] == "acme"', {}, { 'x-tenant': 'SECRET-TENANT' }, 'returned false'],
    ['a string', 'request.headers["authorization"]', {}, { authorization: 'Bearer SECRET.TOKEN.VALUE' }, 'returned a string, not true'],
    ['a number', 'claims.secret', { secret: 123456789 }, {}, 'returned a double, not true'],
    ['a list', 'claims.secret', { secret: ['SECRET'] }, {}, 'returned a list, not true'],
    ['a map', 'request.headers', {}, { cookie: 'id=SECRET' }, 'returned a map, not true'],
    ['null', 'claims.secret', { secret: null }, {}, 'returned null, not true'],
    ['an error', 'duration(request.headers.cookie) > duration("1s")', {}, { cookie: 'id=SECRET' }, 'failed: EvaluationError invalid_duration'],
    ['an error naming a request value', 'claims[request.headers["x-k"]] == 1', {}, { 'x-k': 'SECRET' }, 'failed: EvaluationError no_such_key'],
  ])('logs a denial by %s with the rule and the kind of result, never the value', (_what, source, claims, headers, outcome) => {
    const rule = compileClaimRule(source);
    if (typeof rule === 'string') throw new Error(rule);
    const allow = compileClaimRule('true');
    if (typeof allow === 'string') throw new Error(allow);
    const denial = compileClaimCheck([allow, rule])!(ctx({}, headers), principal(claims));
    expect(denial?.code).toBe('GH_ERR_AUTHZ_CLAIM_DENIED');
    expect(denial?.detail).toBe(`claims[1] ${JSON.stringify(source)} ${outcome}`);
    expect(denial?.detail).not.toContain('SECRET');
    expect(denial?.description).not.toContain('SECRET');
  });

  it('uses the rule message as the public text of the 403', () => {
    const rule = compileClaimRule('false', 'wrong tenant');
    if (typeof rule === 'string') throw new Error(rule);
    expect(compileClaimCheck([rule])!(ctx(), principal({}))?.description).toBe('wrong tenant');
  });
});

describe('step-up (RFC 9470)', () => {
  const check = compileStepUp({ acr: ['urn:mfa', 'urn:hwk'], amr: ['mfa'], maxAuthAge: 300_000 })!;
  const fresh = { acr: 'urn:mfa', amr: ['pwd', 'mfa'], auth_time: NOW / 1000 - 60 };
  it('passes a fresh MFA authentication', () => {
    expect(check(principal(fresh), NOW)).toBeNull();
  });
  it.each([
    ['an acr outside the list', { ...fresh, acr: 'urn:pwd' }],
    ['no acr', { ...fresh, acr: undefined }],
    ['amr without mfa', { ...fresh, amr: ['pwd'] }],
    ['amr that is not an array', { ...fresh, amr: 'mfa' }],
    ['an auth_time older than maxAuthAge', { ...fresh, auth_time: NOW / 1000 - 600 }],
    ['no auth_time', { ...fresh, auth_time: undefined }],
  ])('asks to step up for %s', (_name, claims) => {
    const denial = check(principal(claims), NOW);
    expect(denial).toBeInstanceOf(StepUpRequired);
    expect(denial?.status).toBe(401);
    expect(denial?.oauthError).toBe('insufficient_user_authentication');
    expect(denial?.acrValues).toBe('urn:mfa urn:hwk');
    expect(denial?.maxAge).toBe(300);
  });
});

describe('forwardClaims', () => {
  it('adds one header per mapped claim, lowercased', () => {
    const out: [string, string][] = [];
    compileForwardClaims({ 'X-Auth-Sub': 'sub', 'X-Roles': 'roles', 'X-Missing': 'nope' })!(principal({ sub: 'u1', roles: ['a', 'b'] }), out);
    expect(out).toEqual([
      ['x-auth-sub', 'u1'],
      ['x-roles', 'a,b'],
    ]);
  });
  it.each([
    ['a CR LF injection', 'a\r\nx-admin: 1', undefined],
    ['an object', { a: 1 }, undefined],
    ['a number', 42, '42'],
    ['non-ASCII text', 'é', undefined],
  ])('handles %s safely', (_name, value, expected) => {
    expect(headerValue(value)).toBe(expected);
  });
});

describe('authz area', () => {
  it('reports a bad CEL expression as a config issue with file, line and key path', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-authz-'));
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      `listen: { port: 0 }
issuers:
  - { name: main, issuer: https://id.example.test, jwksUri: https://id.example.test/jwks, audiences: [api] }
upstreams:
  - { name: api, url: http://127.0.0.1:1 }
routes:
  - name: users
    path: /users/{userId}
    upstream: api
    claims:
      - claims.sub == request.params.userId
      - claims.sub ==
`,
    );
    const config = loadConfigFile(file);
    const area = (await createAuthzArea(config, testServices())) as Awaited<ReturnType<typeof createAuthzArea>> & { issues: { line: number; path: string; message: string; file: string }[] };
    expect(area.issues).toHaveLength(1);
    expect(area.issues[0]).toMatchObject({ line: 12, path: 'routes[0].claims[1]', file });
    expect(area.issues[0]!.message).toMatch(/CEL/);
  });
});
