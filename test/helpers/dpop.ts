import { generateKeyPairSync, hash, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { DEMO_CLIENT_SECRETS, type AuthorizationServer } from './issuer.js';

/**
 * A DPoP client (RFC 9449) for the end-to-end tests: its key pair, its proofs, and a token bound
 * to its key by the real oidc-provider server (a proof at the token endpoint).
 *
 * @example
 * ```ts
 * const alice = dpopClient();
 * const { token } = await boundToken(as, alice, 'demo-client', AUDIENCE);
 * await request(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(alice, 'GET', url, token) } });
 * ```
 */
export interface DpopClient {
  privateKey: KeyObject;
  jwk: JWK;
}

export function dpopClient(): DpopClient {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: publicKey.export({ format: 'jwk' }) as JWK };
}

/** A proof for one request (`ath` when a token goes with it); `claims` replace the defaults. */
export function dpopProof(c: DpopClient, htm: string, htu: string, token?: string, claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ...(token ? { ath: hash('sha256', token, 'base64url') } : {}), ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: c.jwk })
    .sign(c.privateKey);
}

/** Client credentials with a DPoP proof at the token endpoint: the token is bound to `c`'s key. */
export async function boundToken(as: AuthorizationServer, c: DpopClient, clientId: 'demo-client' | 'demo-opaque', audience: string): Promise<{ token: string; type: string }> {
  const res = await request(as.tokenEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${clientId}:${DEMO_CLIENT_SECRETS[clientId]}`).toString('base64')}`,
      dpop: await dpopProof(c, 'POST', as.tokenEndpoint),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', resource: audience }).toString(),
  });
  const body = (await res.body.json()) as { access_token?: string; token_type?: string };
  if (res.statusCode !== 200 || !body.access_token) throw new Error(`token endpoint: ${res.statusCode} ${JSON.stringify(body)}`);
  return { token: body.access_token, type: body.token_type ?? '' };
}
