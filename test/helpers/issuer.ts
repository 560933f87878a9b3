/**
 * The development authorization server for tests (real oidc-provider on 127.0.0.1, port 0),
 * plus a driver for its development login and consent pages. See src/demo/authorization-server.ts.
 *
 * @example
 * ```ts
 * const as = await startAuthorizationServer({ audience: 'https://api.example.com' });
 * const token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
 * ```
 */
export {
  startAuthorizationServer,
  demoClients,
  DEMO_CLIENT_SECRETS,
  AuthorizationServerError,
  type AuthorizationServer,
  type AuthorizationServerOptions,
  type AccessTokenFormat,
  type ClientMetadata,
  type DownMode,
  type EndpointCounts,
  type SigningAlg,
  type TokenResponse,
} from '../../src/demo/authorization-server.js';
