import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { checkClientTls, clientTlsOptions } from '../../src/forward/outbound.js';
import { startTestGateway } from '../helpers/gateway.js';
import { createTestPki } from '../helpers/certs.js';

/** The outbound `tls` sections' files: refused with the key that names them, before a plan is built. */
describe('outbound TLS files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-outbound-tls-'));
  writeFileSync(path.join(dir, 'empty.pem'), '');
  writeFileSync(path.join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');

  it('clientTlsOptions throws naming the file when it cannot be read', () => {
    expect(() => clientTlsOptions({ ca: 'nope.pem' }, dir)).toThrow('CA nope.pem cannot be read (ENOENT)');
    expect(() => clientTlsOptions({ key: 'gone-key.pem' }, dir)).toThrow('key gone-key.pem cannot be read (ENOENT)');
  });

  it('checkClientTls: one problem per unusable entry, with its line — what the files hold included', async () => {
    const pki = await createTestPki();
    const one = await pki.client('one');
    const two = await pki.client('two');
    writeFileSync(
      path.join(dir, 'gatehouse.yaml'),
      `listen: { port: 0 }
upstreams:
  - { name: good, url: "https://127.0.0.1:1", tls: { ca: ${pki.caFile}, cert: ${one.certFile}, key: ${one.keyFile} } }
  - { name: empty, url: "https://127.0.0.1:2", tls: { ca: ./empty.pem } }
  - { name: broken, url: "https://127.0.0.1:3", tls: { ca: ./broken.pem, key: ./empty.pem } }
  - { name: mismatched, url: "https://127.0.0.1:4", tls: { cert: ${one.certFile}, key: ${two.keyFile} } }
routes: [ { name: r, path: /, upstream: good, public: true } ]
`,
    );
    const config = loadConfigFile(path.join(dir, 'gatehouse.yaml'), {});
    expect(checkClientTls(config).map((i) => [i.path, i.line, i.message])).toEqual([
      ['upstreams[1].tls.ca', 4, 'CA ./empty.pem is not a PEM certificate'],
      ['upstreams[2].tls.ca', 5, 'CA ./broken.pem is not a PEM certificate'],
      ['upstreams[2].tls.key', 5, 'key ./empty.pem is not an unencrypted PEM private key'],
      ['upstreams[3].tls.key', 6, `key ${two.keyFile} does not belong to certificate ${one.certFile}`],
    ]);
    // The config's value is unchanged by the locator it keeps.
    expect(Object.keys(config)).not.toContain('locate');
  });

  it('an expired client certificate is refused like a listener\'s', async () => {
    const pki = await createTestPki();
    const old = await pki.client('old');
    writeFileSync(
      path.join(dir, 'gatehouse.yaml'),
      `listen: { port: 0 }
upstreams: [ { name: u, url: "https://127.0.0.1:1", tls: { cert: ${old.certFile}, key: ${old.keyFile} } } ]
routes: [ { name: r, path: /, upstream: u, public: true } ]
`,
    );
    const config = loadConfigFile(path.join(dir, 'gatehouse.yaml'), {});
    expect(checkClientTls(config)).toEqual([]);
    const later = Date.now;
    Date.now = () => later() + 20 * 365 * 86_400_000;
    try {
      expect(checkClientTls(config).map((i) => [i.path, i.message.replace(/ on .*/, '')])).toEqual([['upstreams[0].tls.key', `certificate ${old.certFile} expired`]]);
    } finally {
      Date.now = later;
    }
  });

  it('a reload to a config with a missing CA file is refused as a config error; the running config stays', async () => {
    const base = `listen: { host: 127.0.0.1, port: 0 }
upstreams: [ { name: api, url: "http://127.0.0.1:9" } ]
routes: [ { name: r, path: /, upstream: api, public: true } ]
`;
    const gw = await startTestGateway(base);
    try {
      const broken = base.replace('url: "http://127.0.0.1:9" }', 'url: "https://127.0.0.1:9", tls: { ca: ./gone.pem } }');
      const refused = await gw.reload(broken).then(
        () => null,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(ConfigError);
      expect((refused as ConfigError).issues.map((i) => [i.path, i.line])).toEqual([['upstreams[0].tls.ca', 2]]);
      expect(gw.gateway.plan().config.upstreams[0]!.url).toBe('http://127.0.0.1:9');
    } finally {
      await gw.close();
    }
  });
});

describe('client certificates: their expiry watched', () => {
  it('each one an upstream or an issuer is presented is a gauge of its expiry; fewer than 14 days left is a warning at start and reload; a reload that drops it drops its series', async () => {
    const pki = await createTestPki();
    const issued = await pki.ca.issue({ client: true, commonName: 'gatehouse-soon', validityDays: 5 });
    const soon = pki.write('soon.pem', issued.certPem);
    const soonKey = pki.write('soon-key.pem', issued.keyPem);
    const fine = await pki.client('fine');
    const yaml = (upstreams: string) => `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams:
${upstreams}
routes: [ { name: r, path: /, upstream: a, public: true } ]
`;
    const both = `  - { name: a, url: "https://127.0.0.1:1", tls: { cert: ${soon}, key: ${soonKey} } }
  - { name: b, url: "https://127.0.0.1:2", tls: { cert: ${fine.certFile}, key: ${fine.keyFile} } }`;
    const gw = await startTestGateway(yaml(both));
    const gauge = async () =>
      (await (await fetch(`${gw.adminUrl}/metrics`)).text()).split('\n').filter((l) => l.startsWith('gatehouse_tls_client_certificate_not_after_seconds{'));
    try {
      const lines = await gauge();
      expect(lines).toHaveLength(2);
      const expiry = Number(lines.find((l) => l.includes('client="upstream:a"'))!.split(' ').at(-1));
      expect(Math.abs(expiry * 1000 - (Date.now() + 5 * 86_400_000))).toBeLessThan(3_600_000);
      expect(lines.some((l) => l.includes('client="upstream:b"') && l.includes(`certificate="${fine.certFile}"`))).toBe(true);
      const warnings = gw.logs.filter((l) => l.msg === 'client certificate expires soon');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ client: 'upstream:a', certificate: soon, days: 4 });
      expect(String(warnings[0]!.subject)).toContain('gatehouse-soon');
      await gw.reload(yaml(`  - { name: a, url: "https://127.0.0.1:1" }`));
      expect(await gauge()).toEqual([]);
    } finally {
      await gw.close();
    }
  });
});
