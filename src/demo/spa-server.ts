/**
 * A small static file server for the example SPA (examples/spa): serves the files, `/config.json`
 * (where the gateway and its token handler are), and `index.html` for every other path (so the
 * redirect URI `/callback` lands on the app). Development only.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the SPA needs to know, served as `/config.json`. */
export interface SpaConfig {
  /** The gateway origin, e.g. `http://127.0.0.1:8080`. */
  gatewayUrl: string;
  /** `tokenHandler.basePath`; default `/tokenhandler`. */
  basePath?: string;
  /** The API path the "Call API" button calls through the gateway; default `/orders`. */
  apiPath?: string;
  /** `tokenHandler.csrfHeader`; default `x-gatehouse-csrf`. */
  csrfHeader?: string;
}

/** Options of {@link serveSpa}. */
export interface ServeSpaOptions {
  /** Port; 0 (default) picks a free one. */
  port?: number;
  /** Interface; default `127.0.0.1`. */
  host?: string;
  /** The directory of the SPA files; default `examples/spa` of this package. */
  dir?: string;
  /** The config, or a function read on each request (so it can be completed once the gateway runs). */
  config: SpaConfig | (() => SpaConfig);
  /**
   * Serve HTTPS with this certificate (PEM file paths). Use it when the gateway is on HTTPS:
   * SameSite is schemeful, so an http page and an https gateway are different sites and the
   * `SameSite=Strict` cookies would not be sent.
   */
  tls?: { cert: string; key: string };
}

/** A running SPA server. */
export interface SpaServer {
  /** The SPA's origin, e.g. `http://127.0.0.1:5173` (this is what `trustedOrigins` lists). */
  url: string;
  port: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

/**
 * The default location of the example SPA (examples/spa, from src/demo or dist/demo).
 *
 * @example
 * ```ts
 * await serveSpa({ dir: defaultSpaDir(), config: { gatewayUrl } });
 * ```
 */
export function defaultSpaDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'spa');
}

/**
 * Serve the example SPA.
 *
 * @example
 * ```ts
 * const spa = await serveSpa({ port: 5173, config: { gatewayUrl: gateway.url } });
 * // tokenHandler.trustedOrigins: [spa.url]; redirectUri: `${spa.url}/callback`
 * await spa.close();
 * ```
 */
export async function serveSpa(options: ServeSpaOptions): Promise<SpaServer> {
  const dir = path.resolve(options.dir ?? defaultSpaDir());
  const configOf = typeof options.config === 'function' ? options.config : () => options.config as SpaConfig;
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void answer(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
    });
  };
  const server = options.tls
    ? https.createServer({ cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) }, listener)
    : http.createServer(listener);

  async function answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0 });
      res.end();
      return;
    }
    const config = configOf();
    const gatewayOrigin = new URL(config.gatewayUrl).origin;
    // WebSockets to the gateway too (ws:// or wss://): an http(s) source does not match them (CSP3 §6.7.2.8).
    const gatewaySockets = gatewayOrigin.replace(/^http/, 'ws');
    const headers: Record<string, string> = {
      // The page talks to itself and to the gateway, nothing else; and it never leaks the
      // authorization code in its URL through a Referer.
      'content-security-policy': `default-src 'self'; connect-src 'self' ${gatewayOrigin} ${gatewaySockets}; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    };
    const pathname = new URL(req.url ?? '/', 'http://spa').pathname;
    if (pathname === '/config.json') {
      const body = JSON.stringify({
        gatewayUrl: gatewayOrigin,
        basePath: config.basePath ?? '/tokenhandler',
        apiPath: config.apiPath ?? '/orders',
        csrfHeader: config.csrfHeader ?? 'x-gatehouse-csrf',
      });
      send(res, req, 200, { ...headers, 'content-type': 'application/json' }, Buffer.from(body));
      return;
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      decoded = '/';
    }
    let file = path.resolve(dir, '.' + decoded);
    // Anything outside the directory, or without a file extension, is the app itself.
    if (!file.startsWith(dir + path.sep) || path.extname(file) === '') file = path.join(dir, 'index.html');
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      send(res, req, 404, { ...headers, 'content-type': 'text/plain' }, Buffer.from('not found'));
      return;
    }
    send(res, req, 200, { ...headers, 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }, body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host}:${address.port}`,
    port: address.port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: http.ServerResponse, req: http.IncomingMessage, status: number, headers: Record<string, string>, body: Buffer): void {
  res.writeHead(status, { ...headers, 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * The `tokenHandler` section for a demo config serving the example SPA at `spaUrl` with the
 * development authorization server's `spa` client (`demoClients(`${spaUrl}/callback`)`).
 * Append it to a config whose cookie routes say `auth: cookie`.
 *
 * @example
 * ```ts
 * const yaml = baseConfig + tokenHandlerDemoYaml({ issuer: 'demo', spaUrl: spa.url, clientSecret: DEMO_CLIENT_SECRETS.spa });
 * ```
 */
export function tokenHandlerDemoYaml(o: { issuer: string; spaUrl: string; clientSecret: string; cookieKey?: string; scope?: string }): string {
  const origin = new URL(o.spaUrl).origin;
  const key = o.cookieKey ?? randomBytes(32).toString('base64');
  return `
tokenHandler:
  basePath: /tokenhandler
  issuer: ${o.issuer}
  clientId: spa
  clientSecret: ${JSON.stringify(o.clientSecret)}
  redirectUri: ${origin}/callback
  postLogoutRedirectUri: ${origin}/
  scope: ${o.scope ?? 'openid profile orders:read orders:write'}
  trustedOrigins: [${origin}]
  cookieKeys: [${JSON.stringify(key)}]
`;
}
