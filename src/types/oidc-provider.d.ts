/**
 * Minimal type declarations for `oidc-provider` 9 (the package ships JavaScript only). They cover
 * what gatehouse's development authorization server (src/demo/authorization-server.ts) uses; the
 * configuration object stays loosely typed on purpose, oidc-provider validates it at construction.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  /** Client metadata as registered (RFC 7591 names), plus gatehouse's `access_token_format`. */
  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    redirect_uris?: string[];
    post_logout_redirect_uris?: string[];
    grant_types?: string[];
    response_types?: string[];
    scope?: string;
    token_endpoint_auth_method?: string;
    application_type?: 'web' | 'native';
    introspection_signed_response_alg?: string;
    id_token_signed_response_alg?: string;
    client_name?: string;
    [key: string]: unknown;
  }

  /** The provider configuration; see oidc-provider's docs/README.md. */
  export type Configuration = Record<string, unknown>;

  /** A storage adapter instance for one model (`Session`, `AccessToken`, `Client`, ...). */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export interface AdapterPayload {
    grantId?: string;
    userCode?: string;
    uid?: string;
    consumed?: number;
    jti?: string;
    [key: string]: unknown;
  }

  /** The parts of a client instance the server's policies read. */
  export interface Client {
    clientId: string;
    clientAuthMethod: string;
    scope?: string;
    grantTypeAllowed(type: string): boolean;
    [key: string]: unknown;
  }

  /** The parts of a token instance the server's policies read. */
  export interface Token {
    kind: string;
    clientId?: string;
    accountId?: string;
    scope?: string;
    grantId?: string;
    [key: string]: unknown;
  }

  export interface OIDCContext {
    route: string;
    params?: Record<string, unknown>;
    client?: Client;
    entities: Record<string, Record<string, unknown> | undefined>;
    [key: string]: unknown;
  }

  export interface KoaContextWithOIDC {
    oidc: OIDCContext;
    [key: string]: unknown;
  }

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    proxy: boolean;
    keys?: string[];
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;
    on(event: string, listener: (...args: any[]) => void): this;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown>>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    /** Koa middleware, run before oidc-provider's own routes. */
    use(middleware: (ctx: any, next: () => Promise<void>) => Promise<void> | void): this;
    readonly Client: {
      find(id: string): Promise<Client | undefined>;
      validate(metadata: ClientMetadata): Promise<void>;
    };
  }

  class OIDCProviderError extends Error {
    constructor(status: number, message: string);
    error: string;
    error_description?: string;
    status: number;
  }

  export const errors: {
    OIDCProviderError: typeof OIDCProviderError;
    InvalidScope: new (description: string, scope: string) => OIDCProviderError;
    InvalidTarget: new (description?: string) => OIDCProviderError;
    InvalidRequest: new (description: string) => OIDCProviderError;
    InvalidClientMetadata: new (description: string) => OIDCProviderError;
    [name: string]: new (...args: any[]) => OIDCProviderError;
  };

  export default Provider;
}
