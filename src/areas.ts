import type { AreaFactory } from './pipeline/runtime.js';
import { createAuthnArea, introspectsAny } from './authn/index.js';
import { createAuthzArea } from './authz/index.js';
import { createLimitArea } from './limit/index.js';
import { createNetworkArea } from './authz/network.js';
import { createCorsArea } from './respond/cors.js';

// The token handler and the phantom-token area load only for a config that uses them: with
// them comes jose (JWE cookies, the OIDC client, minting), about 1 MB of V8 heap that every full
// collection would mark. A gateway that validates JWTs does it with node:crypto alone.

/** The token-handler area (src/authn/token-handler.ts) when the config has a `tokenHandler`. */
const createTokenHandlerArea: AreaFactory = async (config, services) =>
  config.tokenHandler ? (await import('./authn/token-handler.js')).createTokenHandlerArea(config, services) : { name: 'token-handler' };

/** The phantom-token area (src/authn/phantom-area.ts) when an issuer is introspected. */
const createPhantomArea: AreaFactory = async (config, services) =>
  introspectsAny(config) ? (await import('./authn/phantom-area.js')).createPhantomArea(config, services) : { name: 'phantom' };

/**
 * The areas of a plan, in the order their stages run within each slot. CORS comes first, so that
 * every answer to a page on an allowed origin carries its headers, a pre-auth 429 included (and
 * its preflights are answered before any other handler). The network area's `allowFrom` comes
 * before the pre-auth limit: an address outside a route's list is refused without counting. The token handler comes before authn
 * so that a cookie can supply the token that authn then validates. The phantom
 * area only publishes the gateway's JWKS on the admin listener (no route stages).
 */
export function defaultAreas(): AreaFactory[] {
  return [createCorsArea, createNetworkArea, createLimitArea, createTokenHandlerArea, createAuthnArea, createAuthzArea, createPhantomArea];
}
