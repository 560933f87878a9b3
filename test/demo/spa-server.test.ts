import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveSpa, type SpaServer } from '../../src/demo/spa-server.js';

let spa: SpaServer;

beforeAll(async () => {
  spa = await serveSpa({ config: { gatewayUrl: 'http://127.0.0.1:8443/ignored-path', apiPath: '/orders' } });
});
afterAll(async () => {
  await spa?.close();
});

/** A raw request, so the path reaches the server exactly as written (no client normalization). */
function raw(target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(spa.port, '127.0.0.1', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

describe('SPA server', () => {
  it('never serves a file outside the SPA directory', async () => {
    for (const target of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/../../etc/passwd']) {
      const text = await raw(target);
      expect(text).not.toContain('"name": "gatehouse"');
      expect(text).not.toContain('root:');
    }
  });

  it('refuses methods other than GET and HEAD', async () => {
    expect((await fetch(spa.url + '/', { method: 'POST' })).status).toBe(405);
  });

  it('serves the app for the redirect URI, with a CSP that allows only itself and the gateway', async () => {
    const res = await fetch(spa.url + '/callback?code=abc&state=def');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<script type="module" src="/app.js">');
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self' http://127.0.0.1:8443 ws://127.0.0.1:8443;");
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('serves the config the app needs', async () => {
    expect(await (await fetch(spa.url + '/config.json')).json()).toEqual({
      gatewayUrl: 'http://127.0.0.1:8443',
      basePath: '/tokenhandler',
      apiPath: '/orders',
      csrfHeader: 'x-gatehouse-csrf',
    });
  });

  it('serves scripts with their type', async () => {
    const res = await fetch(spa.url + '/app.js');
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await res.text()).toContain("credentials: 'include'");
  });
});

describe('tokenHandlerDemoYaml', () => {
  it('gives a tokenHandler section that loads', async () => {
    const { tokenHandlerDemoYaml } = await import('../../src/demo/spa-server.js');
    const { loadConfigText } = await import('../../src/config/load.js');
    const text = `
listen: { port: 0 }
issuers:
  - { name: demo, issuer: 'http://127.0.0.1:9000', discovery: true, audiences: [api] }
upstreams:
  - { name: api, url: 'http://127.0.0.1:9001' }
routes:
  - { name: orders, path: /orders, upstream: api, auth: cookie, scopes: ['orders:read'] }
${tokenHandlerDemoYaml({ issuer: 'demo', spaUrl: 'https://127.0.0.1:5173', clientSecret: 'x' })}`;
    const config = loadConfigText(text, 'demo.yaml', {});
    expect(config.tokenHandler).toMatchObject({ redirectUri: 'https://127.0.0.1:5173/callback', trustedOrigins: ['https://127.0.0.1:5173'] });
  });
});
