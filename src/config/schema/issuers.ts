import { closed, duration, httpUrl, name, nonEmptyString, size, stringList, type JsonSchema } from './common.js';
import { clientTls } from './tls.js';

export const ASYMMETRIC_ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
] as const;

/** `issuers[]`: who may issue tokens that gatehouse accepts (issue: JWT access tokens; phantom tokens). */
export const issuer: JsonSchema = closed(
  {
    name,
    issuer: { ...nonEmptyString, description: 'The exact `iss` value.' },
    jwksUri: { ...httpUrl, description: 'Where the issuer publishes its keys (https, except loopback).' },
    discovery: { type: 'boolean', description: 'Find jwks_uri (and introspection_endpoint) via {issuer}/.well-known/openid-configuration.' },
    audiences: { type: 'array', items: nonEmptyString, minItems: 1 },
    algorithms: { type: 'array', items: { enum: [...ASYMMETRIC_ALGORITHMS] }, minItems: 1, description: 'Asymmetric algorithms only; none and HS* are refused.' },
    clockSkew: duration,
    requireTyp: nonEmptyString,
    maxTokenAge: duration,
    requiredClaims: stringList,
    maxTokenSize: size,
    jwksRefresh: duration,
    jwksCooldown: duration,
    fetchTimeout: duration,
    maxResponseSize: size,
    tls: clientTls,
    introspection: closed(
      {
        endpoint: httpUrl,
        clientId: nonEmptyString,
        clientSecret: nonEmptyString,
        authMethod: { enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] },
        privateKey: { ...nonEmptyString, description: 'PEM file or JWK JSON for private_key_jwt.' },
        accept: { enum: ['application/json', 'application/jwt', 'application/token-introspection+jwt'] },
        cacheTtl: duration,
        negativeCacheTtl: duration,
        timeout: duration,
        audience: nonEmptyString,
      },
      ['clientId'],
    ),
  },
  ['name', 'issuer'],
);
