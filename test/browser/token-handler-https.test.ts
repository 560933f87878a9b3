/**
 * The token handler in Chromium over HTTPS, as the demo runs it: gatehouse and the SPA on
 * https://127.0.0.1 with a certificate from a CA generated at test start. SameSite is schemeful,
 * so an https gateway needs an https SPA for its `SameSite=Strict` cookies to be sent.
 *
 * The browser trusts exactly this test certificate (`--ignore-certificate-errors-spki-list` with
 * the SHA-256 of its public key), nothing else. FAILS, never skips, without Chromium.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { createCertificateAuthority, createSelfSignedCertificate } from '../../src/demo/dev-cert.js';
import { serveSpa, type SpaConfig, type SpaServer } from '../../src/demo/spa-server.js';
import { launchChromium, requireChromium } from '../helpers/browser.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { DEMO_CLIENT_SECRETS, demoClients, startAuthorizationServer, type AuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let browser: Browser;
let context: BrowserContext;
let page: Page;
let as: AuthorizationServer;
let api: TestUpstream;
let gw: TestGateway;
let spa: SpaServer;
const spaConfig: SpaConfig = { gatewayUrl: 'https://127.0.0.1:1', apiPath: '/orders' };

beforeAll(async () => {
  requireChromium();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-th-https-'));
  const ca = await createCertificateAuthority({ commonName: 'gatehouse token-handler test CA' });
  const leaf = await ca.issue({ hosts: ['127.0.0.1', 'localhost'] });
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  writeFileSync(certFile, leaf.certPem);
  writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
  const spki = new X509Certificate(leaf.certPem).publicKey.export({ type: 'spki', format: 'der' });
  const spkiHash = createHash('sha256').update(spki).digest('base64');

  spa = await serveSpa({ config: () => spaConfig, tls: { cert: certFile, key: keyFile } });
  as = await startAuthorizationServer({ clients: demoClients(`${spa.url}/callback`, `${spa.url}/`) });
  api = await startUpstream();
  api.setHandler((req, res) => {
    const auth = req.headers.authorization ?? '';
    const claims = JSON.parse(Buffer.from(auth.split('.')[1] ?? '', 'base64url').toString() || '{}') as { sub?: string };
    const text = JSON.stringify({ orders: [], for: claims.sub });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  gw = await startTestGateway(
    `
listen: { host: 127.0.0.1, port: 0, tls: { cert: '${certFile}', key: '${keyFile}' } }
issuers:
  - { name: main, issuer: '${as.issuer}', discovery: true, audiences: ['${as.audience}'] }
upstreams:
  - { name: api, url: '${api.url}' }
tokenHandler:
  issuer: main
  clientId: spa
  clientSecret: \${SPA_CLIENT_SECRET}
  redirectUri: ${spa.url}/callback
  postLogoutRedirectUri: ${spa.url}/
  scope: openid profile orders:read
  trustedOrigins: [${spa.url}]
  cookieKeys: [\${COOKIE_KEY}]
routes:
  - { name: orders, path: /orders, upstream: api, auth: cookie-only, scopes: ['orders:read'] }
`,
    { dir, env: { SPA_CLIENT_SECRET: DEMO_CLIENT_SECRETS.spa, COOKIE_KEY: randomBytes(32).toString('base64') } },
  );
  expect(gw.url.startsWith('https://')).toBe(true);
  spaConfig.gatewayUrl = gw.url;

  browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash}`]);
  context = await browser.newContext();
  page = await context.newPage();
});

afterAll(async () => {
  await browser?.close();
  await Promise.allSettled([gw?.close(), spa?.close(), api?.close()]);
  await as?.stop();
});

describe('token handler in Chromium over HTTPS', () => {
  it('logs in, calls the API, refreshes and logs out with __Host- cookies over https (HTTP/2)', async () => {
    // Record the protocol of every gateway answer (the agent and the API are reached over h2).
    const cdp = await context.newCDPSession(page);
    const protocols: string[] = [];
    cdp.on('Network.responseReceived', (event: { response: { url: string; protocol?: string } }) => {
      if (event.response.url.startsWith(gw.url)) protocols.push(event.response.protocol ?? '');
    });
    await cdp.send('Network.enable');
    await page.goto(spa.url);
    await page.locator('#status[data-state="logged-out"]').waitFor({ timeout: 15_000 });
    await page.click('#login');
    await page.waitForURL((url) => url.href.startsWith(as.issuer), { timeout: 15_000 });
    await page.fill('input[name="login"]', 'carol');
    await page.fill('input[name="password"]', 'any-password');
    await page.click('button[type="submit"]');
    await page.waitForURL((url) => url.href.startsWith(spa.url) || url.pathname.startsWith('/interaction/'), { timeout: 15_000 });
    if (page.url().startsWith(as.issuer)) await page.click('button[type="submit"]');
    await page.locator('#status[data-state="logged-in"]').waitFor({ timeout: 15_000 });

    const at = (await context.cookies(gw.url)).find((c) => c.name === '__Host-gh-at');
    expect(at).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(await page.evaluate(() => document.cookie)).toBe('');

    await page.click('#call-api');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toContain('"for": "carol"');
    await page.click('#refresh');
    await expect.poll(async () => page.locator('#output').textContent(), { timeout: 10_000 }).toBe('Tokens refreshed.');

    expect(protocols.length).toBeGreaterThan(3);
    expect(new Set(protocols)).toEqual(new Set(['h2']));
    await page.click('#logout');
    await page.waitForURL((url) => url.href.startsWith(as.issuer), { timeout: 15_000 });
    await page.click('button[type="submit"][value="yes"], button[name="logout"]');
    await page.waitForURL((url) => url.href.startsWith(spa.url), { timeout: 15_000 });
    await page.locator('#status[data-state="logged-out"]').waitFor({ timeout: 15_000 });
    expect((await context.cookies(gw.url)).filter((c) => c.name.includes('-gh-'))).toEqual([]);
  });

  it('trusts only the test certificate: another self-signed one is refused', async () => {
    const other = await createSelfSignedCertificate({ hosts: ['127.0.0.1'] });
    const server = https.createServer({ cert: other.certPem, key: other.keyPem }, (_req, res) => res.end('should not be reached'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const probe = await context.newPage();
      await expect(probe.goto(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`)).rejects.toThrow(/ERR_CERT/);
      await probe.close();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
