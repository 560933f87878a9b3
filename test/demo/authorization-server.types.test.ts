import { describe, expectTypeOf, test } from 'vitest';
import {
  demoClients,
  startAuthorizationServer,
  type AuthorizationServer,
  type AuthorizationServerOptions,
  type ClientMetadata,
  type Endpoint,
  type TokenResponse,
} from '../../src/demo/authorization-server.js';
import { startSampleApi, type SampleApi } from '../../src/demo/sample-api.js';

describe('public API types', () => {
  test('startAuthorizationServer takes optional options and resolves to an AuthorizationServer', () => {
    expectTypeOf(startAuthorizationServer).parameter(0).toEqualTypeOf<AuthorizationServerOptions | undefined>();
    expectTypeOf(startAuthorizationServer).returns.resolves.toEqualTypeOf<AuthorizationServer>();
  });

  test('the server exposes the endpoints and controls other helpers code against', () => {
    expectTypeOf<AuthorizationServer['issuer']>().toEqualTypeOf<string>();
    expectTypeOf<AuthorizationServer['clientCredentialsToken']>().returns.resolves.toEqualTypeOf<string>();
    expectTypeOf<AuthorizationServer['clientCredentialsGrant']>().returns.resolves.toEqualTypeOf<TokenResponse>();
    expectTypeOf<AuthorizationServer['counts']['introspection']>().toEqualTypeOf<number>();
    expectTypeOf<AuthorizationServer['setDown']>().parameter(0).toEqualTypeOf<boolean>();
    expectTypeOf<'jwks'>().toExtend<Endpoint>();
  });

  test('signingAlg accepts only asymmetric algorithms', () => {
    expectTypeOf<'HS256'>().not.toExtend<NonNullable<AuthorizationServerOptions['signingAlg']>>();
    expectTypeOf<'EdDSA'>().toExtend<NonNullable<AuthorizationServerOptions['signingAlg']>>();
  });

  test('demoClients returns client metadata; startSampleApi a SampleApi', () => {
    expectTypeOf(demoClients).returns.toEqualTypeOf<ClientMetadata[]>();
    expectTypeOf(startSampleApi).returns.resolves.toEqualTypeOf<SampleApi>();
  });
});
