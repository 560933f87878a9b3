import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

interface HttpsUpstream {
  url: string;
  hits: { url: string; clientCn: string | null }[];
  close(): Promise<void>;
}

/** An HTTPS echo upstream; with `clientCa` it requires a client certificate from that CA. */
async function startHttpsUpstream(
  cert: CertFiles,
  options: { clientCa?: string; handler?: (url: string) => [number, string, string]; legacy?: boolean } = {},
): Promise<HttpsUpstream> {
  const hits: HttpsUpstream['hits'] = [];
  const server = https.createServer(
    {
      cert: cert.certPem,
      key: cert.keyPem,
      ...(options.clientCa ? { ca: options.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
      // An old server: TLS 1.0/1.1 only.
      ...(options.legacy ? { minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0' } : {}),
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate?.();
      hits.push({ url: req.url ?? '', clientCn: peer && peer.subject ? String(peer.subject.CN) : null });
      const [status, type, body] = options.handler?.(req.url ?? '') ?? [200, 'application/json', JSON.stringify({ url: req.url })];
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    hits,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let pki: TestPki;
let good: HttpsUpstream; // CA-issued, right host name
let selfSigned: HttpsUpstream; // its own issuer
let wrongName: HttpsUpstream; // CA-issued for another name
let mutual: HttpsUpstream; // requires a client certificate
let legacy: HttpsUpstream; // TLS 1.1 at most
let selfSignedCert: CertFiles;
let gatewayClient: CertFiles;
let gw: TestGateway;

beforeAll(async () => {
  pki = await createTestPki();
  good = await startHttpsUpstream(await pki.server('up-good', ['127.0.0.1', 'localhost']));
  selfSignedCert = await pki.selfSigned('up-self', ['127.0.0.1', 'localhost']);
  selfSigned = await startHttpsUpstream(selfSignedCert);
  wrongName = await startHttpsUpstream(await pki.server('up-wrong', ['api.other.example']));
  mutual = await startHttpsUpstream(await pki.server('up-mtls', ['127.0.0.1']), { clientCa: pki.ca.certPem });
  legacy = await startHttpsUpstream(await pki.server('up-legacy', ['127.0.0.1']), { legacy: true });
  gatewayClient = await pki.client('gw-client', 'gatehouse-gateway');
  gw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams:
  - { name: no-ca, url: ${good.url} }
  - { name: with-ca, url: ${good.url}, tls: { ca: ${pki.caFile} } }
  - { name: self-refused, url: ${selfSigned.url}, tls: { ca: ${pki.caFile} } }
  - { name: self-pinned, url: ${selfSigned.url}, tls: { ca: ${selfSignedCert.certFile} } }
  - { name: wrong-name, url: ${wrongName.url}, tls: { ca: ${pki.caFile} } }
  - { name: wrong-name-servername, url: ${wrongName.url}, tls: { ca: ${pki.caFile}, servername: api.other.example } }
  - { name: mtls-missing, url: ${mutual.url}, tls: { ca: ${pki.caFile} } }
  - { name: mtls, url: ${mutual.url}, tls: { ca: ${pki.caFile}, cert: ${gatewayClient.certFile}, key: ${gatewayClient.keyFile} } }
  - { name: legacy, url: ${legacy.url}, tls: { ca: ${pki.caFile} } }
routes:
  - { name: no-ca, path: /no-ca, upstream: no-ca, public: true }
  - { name: with-ca, path: /with-ca, upstream: with-ca, public: true }
  - { name: self-refused, path: /self-refused, upstream: self-refused, public: true }
  - { name: self-pinned, path: /self-pinned, upstream: self-pinned, public: true }
  - { name: wrong-name, path: /wrong-name, upstream: wrong-name, public: true }
  - { name: wrong-name-servername, path: /wrong-name-servername, upstream: wrong-name-servername, public: true }
  - { name: mtls-missing, path: /mtls-missing, upstream: mtls-missing, public: true }
  - { name: mtls, path: /mtls, upstream: mtls, public: true }
  - { name: legacy, path: /legacy, upstream: legacy, public: true }
`);
});

afterAll(async () => {
  await gw?.close();
  for (const u of [good, selfSigned, wrongName, mutual, legacy]) await u?.close();
});

async function call(path: string): Promise<{ status: number; code?: string }> {
  const res = await request(`${gw.url}${path}`);
  const body = (await res.body.json()) as { code?: string };
  return { status: res.statusCode, code: body.code };
}

describe('upstream certificate verification', () => {
  it('refuses an upstream whose CA is not trusted (no tls.ca): 502, and logs why', async () => {
    const before = good.hits.length;
    expect(await call('/no-ca/x')).toEqual({ status: 502, code: 'GH_ERR_UPSTREAM_CONNECT' });
    expect(good.hits.length).toBe(before);
    expect(gw.logs.find((l) => l.route === 'no-ca' && l.status === 502)?.detail).toMatch(/certificate/i);
  });

  it('reaches the same upstream once its CA is configured', async () => {
    expect(await call('/with-ca/x')).toEqual({ status: 200, code: undefined });
    expect(good.hits.at(-1)!.url).toBe('/with-ca/x');
  });

  it('refuses a self-signed upstream', async () => {
    expect(await call('/self-refused/x')).toEqual({ status: 502, code: 'GH_ERR_UPSTREAM_CONNECT' });
    expect(selfSigned.hits.length).toBe(0);
  });

  it('accepts a self-signed upstream whose own certificate is configured as the CA', async () => {
    expect((await call('/self-pinned/x')).status).toBe(200);
    expect(selfSigned.hits.length).toBe(1);
  });

  it('refuses a certificate for another host name even from a trusted CA', async () => {
    expect(await call('/wrong-name/x')).toEqual({ status: 502, code: 'GH_ERR_UPSTREAM_CONNECT' });
    expect(gw.logs.find((l) => l.route === 'wrong-name' && l.status === 502)?.detail).toMatch(/altnames|host/i);
  });

  it('refuses an upstream that only speaks TLS 1.1 (minVersion TLSv1.2 by default)', async () => {
    expect(await call('/legacy/x')).toEqual({ status: 502, code: 'GH_ERR_UPSTREAM_CONNECT' });
    expect(legacy.hits.length).toBe(0);
    expect(gw.logs.find((l) => l.route === 'legacy' && l.status === 502)?.detail).toMatch(/ERR_SSL_(TLSV1_ALERT_PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL)/);
  });

  it('checks the name given as servername instead of the URL host', async () => {
    expect((await call('/wrong-name-servername/x')).status).toBe(200);
    expect(wrongName.hits.length).toBe(1);
  });
});

describe('mTLS to the upstream', () => {
  it('fails without a client certificate when the upstream requires one', async () => {
    expect(await call('/mtls-missing/x')).toMatchObject({ status: 502 });
    expect(mutual.hits.length).toBe(0);
  });

  it('presents the configured client certificate', async () => {
    expect((await call('/mtls/x')).status).toBe(200);
    expect(mutual.hits.at(-1)).toEqual({ url: '/mtls/x', clientCn: 'gatehouse-gateway' });
  });
});

describe('config', () => {
  it('has no switch to skip verification', async () => {
    await expect(
      startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
upstreams: [{ name: u, url: ${good.url}, tls: { insecureSkipVerify: true } }]
routes: [{ name: r, path: /r, upstream: u, public: true }]
`),
    ).rejects.toMatchObject({ name: 'ConfigError' });
  });
});

describe('outbound calls of the authentication area use the issuer tls section', () => {
  let keys: Awaited<ReturnType<typeof generateKeyPair>>;
  let jwksServer: HttpsUpstream;
  let api: HttpsUpstream;
  let authGw: TestGateway;
  const issuer = 'https://id.test.example';

  beforeAll(async () => {
    keys = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const jwks = JSON.stringify({ keys: [jwk] });
    jwksServer = await startHttpsUpstream(await pki.server('jwks', ['127.0.0.1']), { handler: () => [200, 'application/json', jwks] });
    api = await startHttpsUpstream(await pki.server('api', ['127.0.0.1']));
    authGw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: trusted, issuer: ${issuer}, jwksUri: ${jwksServer.url}/jwks, audiences: [api], tls: { ca: ${pki.caFile} } }
  - { name: untrusted, issuer: ${issuer}/other, jwksUri: ${jwksServer.url}/jwks-other, audiences: [api] }
upstreams: [{ name: api, url: ${api.url}, tls: { ca: ${pki.caFile} } }]
routes:
  - { name: trusted, path: /trusted, upstream: api, issuers: [trusted] }
  - { name: untrusted, path: /untrusted, upstream: api, issuers: [untrusted] }
`);
  });

  afterAll(async () => {
    await authGw?.close();
    await jwksServer?.close();
    await api?.close();
  });

  async function token(iss: string): Promise<string> {
    return new SignJWT({ scope: 'read' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
      .setIssuer(iss)
      .setAudience('api')
      .setSubject('user-1')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(keys.privateKey);
  }

  it('fetches the JWKS over TLS verified with the issuer CA and validates tokens', async () => {
    const bearer = await token(issuer);
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      const res = await request(`${authGw.url}/trusted/data`, { headers: { authorization: `Bearer ${bearer}` } });
      status = res.statusCode;
      await res.body.dump();
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe(200);
    expect(jwksServer.hits.some((h) => h.url === '/jwks')).toBe(true);
  });

  it('never gets keys from a JWKS endpoint whose certificate it cannot verify', async () => {
    const bearer = await token(`${issuer}/other`);
    const res = await request(`${authGw.url}/untrusted/data`, { headers: { authorization: `Bearer ${bearer}` } });
    expect(res.statusCode).toBe(503);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_AUTH_KEYS_UNAVAILABLE');
    expect(jwksServer.hits.some((h) => h.url === '/jwks-other')).toBe(false);
  });
});

describe('introspection (phantom tokens) uses the issuer tls section', () => {
  let introspect: HttpsUpstream;
  let introspectMtls: HttpsUpstream;
  let api: HttpsUpstream;
  let phantomGw: TestGateway;
  const issuer = 'https://login.test.example';

  beforeAll(async () => {
    const answer = (): [number, string, string] => [
      200,
      'application/json',
      JSON.stringify({ active: true, iss: issuer, aud: 'api', sub: 'user-2', scope: 'read', client_id: 'app', exp: Math.floor(Date.now() / 1000) + 300 }),
    ];
    introspect = await startHttpsUpstream(await pki.server('introspect', ['127.0.0.1']), { handler: answer });
    introspectMtls = await startHttpsUpstream(await pki.server('introspect-mtls', ['127.0.0.1']), { handler: answer, clientCa: pki.ca.certPem });
    api = await startHttpsUpstream(await pki.server('phantom-api', ['127.0.0.1']));
    const client = await pki.client('gw-introspection-client', 'gatehouse-introspection');
    const intro = (url: string) => `{ endpoint: ${url}/introspect, clientId: gateway, clientSecret: s3cret, cacheTtl: 0 }`;
    phantomGw = await startTestGateway(`
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: trusted, issuer: ${issuer}, audiences: [api], introspection: ${intro(introspect.url)}, tls: { ca: ${pki.caFile} } }
  - { name: untrusted, issuer: ${issuer}, audiences: [api], introspection: ${intro(introspect.url)} }
  - { name: mtls, issuer: ${issuer}, audiences: [api], introspection: ${intro(introspectMtls.url)}, tls: { ca: ${pki.caFile}, cert: ${client.certFile}, key: ${client.keyFile} } }
upstreams: [{ name: api, url: ${api.url}, tls: { ca: ${pki.caFile} } }]
routes:
  - { name: trusted, path: /trusted, upstream: api, issuers: [trusted] }
  - { name: untrusted, path: /untrusted, upstream: api, issuers: [untrusted] }
  - { name: mtls, path: /mtls, upstream: api, issuers: [mtls] }
gateway: { issuer: https://gatehouse.test.example }
`);
  });

  afterAll(async () => {
    await phantomGw?.close();
    for (const s of [introspect, introspectMtls, api]) await s?.close();
  });

  const opaque = 'opaque-token-0123456789abcdefghijklmnop';

  it('introspects over TLS verified with the issuer CA', async () => {
    const res = await request(`${phantomGw.url}/trusted/x`, { headers: { authorization: `Bearer ${opaque}` } });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(introspect.hits.some((h) => h.url === '/introspect')).toBe(true);
  });

  it('never sends the token to an introspection endpoint whose certificate it cannot verify', async () => {
    const before = introspect.hits.length;
    const res = await request(`${phantomGw.url}/untrusted/x`, { headers: { authorization: `Bearer ${opaque}` } });
    expect(res.statusCode).toBe(503);
    expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_INTROSPECTION_UNAVAILABLE');
    expect(introspect.hits.length).toBe(before);
  });

  it('presents the issuer client certificate to an introspection endpoint that requires one', async () => {
    const res = await request(`${phantomGw.url}/mtls/x`, { headers: { authorization: `Bearer ${opaque}` } });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(introspectMtls.hits.at(-1)).toEqual({ url: '/introspect', clientCn: 'gatehouse-introspection' });
  });
});
