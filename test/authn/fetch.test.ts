import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchDiscovery, discoveryUrl } from '../../src/authn/discovery.js';
import { createFetcher, FetchFailed } from '../../src/authn/fetch.js';
import { createTestPki, type TestPki } from '../helpers/certs.js';
import { issuerConfig } from './jwt-fixtures.js';

/** Outbound GETs for keys: bounded, timed, TLS verified, no redirects; discovery checks. */
let server: http.Server;
let base: string;
let discovery: Record<string, unknown> = {};
const limits = { timeout: 5_000, maxResponseSize: 1024 };

beforeAll(async () => {
  server = http.createServer((req, res) => {
    switch (req.url) {
      case '/ok':
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
      case '/big':
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(`{"x":"${'a'.repeat(4096)}"}`);
      case '/big-chunked':
        res.writeHead(200, { 'content-type': 'application/json' });
        for (let i = 0; i < 10; i++) res.write(`${' '.repeat(512)}`);
        return void res.end('{}');
      case '/hang':
        return; // never answers
      case '/500':
        return void res.writeHead(500).end('oops');
      case '/redirect':
        return void res.writeHead(302, { location: '/ok' }).end();
      case '/html':
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>');
      case '/.well-known/openid-configuration':
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(discovery));
      default:
        return void res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function failure(url: string, timeout = limits.timeout): Promise<string> {
  const fetcher = createFetcher(undefined, process.cwd());
  try {
    await fetcher.getJson(url, { ...limits, timeout });
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(FetchFailed);
    return (err as FetchFailed).reason;
  } finally {
    await fetcher.close();
  }
}

describe('bounded outbound fetch', () => {
  it('reads a JSON document', async () => {
    const fetcher = createFetcher(undefined, process.cwd());
    expect(await fetcher.getJson(`${base}/ok`, limits)).toEqual({ keys: [] });
    await fetcher.close();
  });
  it.each([
    ['refuses a response whose declared length is over the limit', '/big', /over the limit/],
    ['refuses a streamed response that grows over the limit', '/big-chunked', /over the limit/],
    ['gives up on a server that never answers', '/hang', /no answer within 300 ms/],
    ['refuses a non-200 status', '/500', /status 500/],
    ['does not follow redirects', '/redirect', /status 302/],
    ['refuses a body that is not JSON', '/html', /not JSON/],
  ])('%s', async (_name, path, reason) => {
    expect(await failure(`${base}${path}`, path === '/hang' ? 300 : limits.timeout)).toMatch(reason);
  });
  it('reports a refused connection', async () => {
    expect(await failure('http://127.0.0.1:1/jwks')).toMatch(/ECONNREFUSED/);
  });
});

describe('TLS of outbound fetches', () => {
  let pki: TestPki;
  let tlsServer: https.Server;
  let url: string;
  beforeAll(async () => {
    pki = await createTestPki();
    const cert = await pki.server('jwks', ['127.0.0.1', 'localhost']);
    tlsServer = https.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
    });
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}/jwks`;
  });
  afterAll(async () => {
    tlsServer.closeAllConnections();
    await new Promise((r) => tlsServer.close(r));
  });

  it('refuses a certificate from a CA it does not trust', async () => {
    expect(await failure(url)).toMatch(/certificate|self.signed|UNABLE_TO/i);
  });
  it('trusts the CA named in the issuer tls.ca', async () => {
    const fetcher = createFetcher({ ca: pki.caFile }, process.cwd());
    expect(await fetcher.getJson(url, limits)).toEqual({ keys: [] });
    await fetcher.close();
  });
  it('throws at build time when tls.ca cannot be read', () => {
    expect(() => createFetcher({ ca: '/nonexistent/ca.pem' }, process.cwd())).toThrow();
  });
});

describe('OpenID Connect discovery', () => {
  it('builds {issuer}/.well-known/openid-configuration without a double slash', () => {
    expect(discoveryUrl('https://id.example/realms/a/')).toBe('https://id.example/realms/a/.well-known/openid-configuration');
  });

  async function discover(doc: Record<string, unknown>) {
    discovery = doc;
    const fetcher = createFetcher(undefined, process.cwd());
    try {
      return await fetchDiscovery(issuerConfig({ issuer: base, discovery: true, jwksUri: undefined }), fetcher);
    } finally {
      await fetcher.close();
    }
  }

  it('returns jwks_uri when the document names the configured issuer', async () => {
    const meta = await discover({ issuer: base, jwks_uri: `${base}/ok` });
    expect(meta.jwks_uri).toBe(`${base}/ok`);
  });
  it('refuses a document whose issuer is not the configured one exactly', async () => {
    await expect(discover({ issuer: `${base}/`, jwks_uri: `${base}/ok` })).rejects.toThrow(/names issuer/);
  });
  it('refuses a jwks_uri that is plain http on a non-loopback host', async () => {
    await expect(discover({ issuer: base, jwks_uri: 'http://keys.example.com/jwks' })).rejects.toThrow(/not an https URL/);
  });
});
