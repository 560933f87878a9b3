import { describe, expectTypeOf, it } from 'vitest';
import type { Result } from '../../src/errors.js';
import { createJwtVerifier, parseJwt, type JwtVerifier, type ParsedJwt, type VerifiedJwt } from '../../src/authn/jwt.js';
import { createAuthnArea } from '../../src/authn/index.js';
import { createAuthzArea } from '../../src/authz/index.js';
import { runTokenInspect } from '../../src/cli/token-inspect.js';
import type { AreaFactory, Readiness } from '../../src/pipeline/runtime.js';
import type { Principal } from '../../src/pipeline/context.js';

/** The public API others build on (phantom tokens, the CLI, the plan) keeps its shape. */
describe('public API types', () => {
  it('createJwtVerifier returns verify / start / close / readiness', () => {
    expectTypeOf(createJwtVerifier).returns.toEqualTypeOf<JwtVerifier>();
    expectTypeOf<JwtVerifier['verify']>().returns.toEqualTypeOf<Promise<Result<VerifiedJwt>>>();
    expectTypeOf<JwtVerifier['start']>().returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf<JwtVerifier['close']>().returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf<JwtVerifier['readiness']>().returns.toEqualTypeOf<Readiness>();
    expectTypeOf<VerifiedJwt['principal']>().toEqualTypeOf<Principal>();
  });
  it('parseJwt returns a Result of ParsedJwt', () => {
    expectTypeOf(parseJwt).returns.toEqualTypeOf<Result<ParsedJwt>>();
  });
  it('the areas are AreaFactories', () => {
    expectTypeOf(createAuthnArea).toEqualTypeOf<AreaFactory>();
    expectTypeOf(createAuthzArea).toEqualTypeOf<AreaFactory>();
  });
  it('runTokenInspect resolves to an exit code', () => {
    expectTypeOf(runTokenInspect).toBeCallableWith('gatehouse.yaml', 'eyJ...', process.stdout);
    expectTypeOf(runTokenInspect).returns.toEqualTypeOf<Promise<number>>();
  });
});
