import { describe, expectTypeOf, it } from 'vitest';
import { createIntrospectionAuthenticator } from '../../src/authn/introspection.js';
import { createPhantomArea } from '../../src/authn/phantom-area.js';
import { useOpaqueAuthenticator, type OpaqueAuthenticatorFactory } from '../../src/authn/index.js';
import type { GatehouseConfig, IssuerConfig } from '../../src/config/types.js';
import type { Authenticator, AuthOutcome } from '../../src/pipeline/context.js';
import type { AreaFactory, GatewayServices, Readiness } from '../../src/pipeline/runtime.js';

describe('public API types', () => {
  it('createIntrospectionAuthenticator fits the authn area hook', () => {
    expectTypeOf(createIntrospectionAuthenticator).parameters.toEqualTypeOf<[IssuerConfig, GatehouseConfig, GatewayServices]>();
    expectTypeOf(createIntrospectionAuthenticator).returns.toMatchTypeOf<Authenticator>();
    expectTypeOf(createIntrospectionAuthenticator).returns.toHaveProperty('readiness').returns.toEqualTypeOf<Readiness>();
    expectTypeOf(createIntrospectionAuthenticator).toMatchTypeOf<OpaqueAuthenticatorFactory>();
    expectTypeOf(useOpaqueAuthenticator).parameter(0).toEqualTypeOf<OpaqueAuthenticatorFactory | null | undefined>();
  });

  it('authenticate answers an AuthOutcome, synchronously on a warm cache', () => {
    type Result = ReturnType<ReturnType<typeof createIntrospectionAuthenticator>['authenticate']>;
    expectTypeOf<Result>().toEqualTypeOf<AuthOutcome | Promise<AuthOutcome>>();
  });

  it('createPhantomArea is an AreaFactory', () => {
    expectTypeOf(createPhantomArea).toEqualTypeOf<AreaFactory>();
  });
});
