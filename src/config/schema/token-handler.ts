import { closed, duration, httpUrl, nonEmptyString, stringList, type JsonSchema } from './common.js';

/**
 * `tokenHandler` (issue 7: token handler for browser apps). The names of the contract
 * (basePath, issuer, clientId, clientSecret, redirectUri, postLogoutRedirectUri, scope,
 * trustedOrigins, cookieKeys) are fixed; docs/token-handler.md documents every key.
 */
export const tokenHandler: JsonSchema = closed(
  {
    basePath: { type: 'string', pattern: '^/' },
    issuer: nonEmptyString,
    clientId: nonEmptyString,
    clientSecret: nonEmptyString,
    redirectUri: httpUrl,
    postLogoutRedirectUri: httpUrl,
    scope: nonEmptyString,
    trustedOrigins: { type: 'array', items: httpUrl, minItems: 1 },
    cookieKeys: { type: 'array', items: nonEmptyString, minItems: 1 },
    cookiePrefix: { type: 'string', pattern: '^[A-Za-z0-9_-]+$', description: 'Cookie name prefix (default __Host-gh; __Secure-gh with cookieDomain).' },
    cookieDomain: nonEmptyString,
    loginStateTtl: duration,
    sessionTtl: duration,
    extraParams: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra parameters on every authorization request.' },
    csrfHeader: { type: 'string', pattern: '^[A-Za-z0-9-]+$', description: 'The header carrying the CSRF token (default x-gatehouse-csrf).' },
    tokenEndpointAuthMethod: {
      enum: ['client_secret_basic', 'client_secret_post', 'none'],
      description: 'How the agent authenticates at the token endpoint (default client_secret_basic, or none without a clientSecret).',
    },
  },
  ['issuer', 'clientId', 'redirectUri', 'trustedOrigins', 'cookieKeys'],
);

export { stringList };
