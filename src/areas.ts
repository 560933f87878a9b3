import type { AreaFactory } from './pipeline/runtime.js';
import { createTokenHandlerArea } from './authn/token-handler.js';
import { createAuthnArea } from './authn/index.js';
import { createPhantomArea } from './authn/phantom-area.js';
import { createAuthzArea } from './authz/index.js';
import { createLimitArea } from './limit/index.js';

/**
 * The areas of a plan, in the order their stages run within each slot. The token handler comes
 * before authn so that a cookie can supply the token that authn then validates. The phantom
 * area only publishes the gateway's JWKS on the admin listener (no route stages).
 */
export function defaultAreas(): AreaFactory[] {
  return [createLimitArea, createTokenHandlerArea, createAuthnArea, createAuthzArea, createPhantomArea];
}
