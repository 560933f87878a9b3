import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { InsufficientScope, InvalidToken, MissingToken, StepUpRequired, internalError } from '../src/errors.js';
import { problemBody } from '../src/respond/problem.js';
import { bearerChallenge } from '../src/respond/www-authenticate.js';

describe('error codes', () => {
  it('are all documented in docs/errors.md', () => {
    const source = readFileSync('src/errors.ts', 'utf8');
    const union = source.slice(source.indexOf('export type GatehouseErrorCode'), source.indexOf('/** OAuth 2.0 bearer-token error values'));
    const codes = [...union.matchAll(/'(GH_ERR_[A-Z0-9_]+)'/g)].map((m) => m[1]!);
    expect(codes.length).toBeGreaterThan(40);
    const docs = readFileSync('docs/errors.md', 'utf8');
    expect(codes.filter((c) => !docs.includes(`\`${c}\``))).toEqual([]);
  });
});

describe('challenges and problem bodies', () => {
  it('sends no error when no token was sent (RFC 6750 §3.1)', () => {
    expect(bearerChallenge(new MissingToken(), 'gatehouse')).toBe('Bearer realm="gatehouse"');
  });
  it('sends invalid_token with a description', () => {
    expect(bearerChallenge(new InvalidToken('GH_ERR_JWT_EXPIRED', 'the access token has expired'), 'gatehouse')).toBe(
      'Bearer realm="gatehouse", error="invalid_token", error_description="the access token has expired"',
    );
  });
  it('sends the needed scope with insufficient_scope', () => {
    expect(bearerChallenge(new InsufficientScope(['orders:read', 'orders:write']), 'r')).toContain('scope="orders:read orders:write"');
  });
  it('sends acr_values and max_age with insufficient_user_authentication (RFC 9470)', () => {
    const challenge = bearerChallenge(new StepUpRequired(['mfa', 'phr'], 300), 'r')!;
    expect(challenge).toContain('error="insufficient_user_authentication"');
    expect(challenge).toContain('acr_values="mfa phr"');
    expect(challenge).toContain('max_age=300');
  });
  it('escapes quotes and backslashes and drops line breaks in auth-params', () => {
    const challenge = bearerChallenge(new InvalidToken('GH_ERR_JWT_MALFORMED', 'a "quoted" \\ value\r\nX-Injected: 1'), 'realm "x"')!;
    expect(challenge).toContain('realm="realm \\"x\\""');
    expect(challenge).toContain('a \\"quoted\\" \\\\ value  X-Injected: 1');
    expect(challenge).not.toMatch(/[\r\n]/);
  });
  it('never exposes internals in a 500 body', () => {
    const error = internalError(new Error('database password is hunter2 at /srv/app.js:12'));
    const body = JSON.parse(problemBody(error, 'req-1'));
    expect(body).toEqual({
      type: 'https://gatehouse.dev/docs/errors#gh_err_internal',
      title: 'Internal Server Error',
      status: 500,
      detail: 'internal error',
      instance: 'urn:gatehouse:request:req-1',
      code: 'GH_ERR_INTERNAL',
    });
    expect(error.detail).toContain('hunter2'); // logged only
  });
});
