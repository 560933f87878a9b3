import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { checkClientTls, clientTlsOptions, TlsFileError } from '../../src/forward/outbound.js';
import { startTestGateway } from '../helpers/gateway.js';
import { createTestPki } from '../helpers/certs.js';

/** The outbound `tls` sections' files: refused with the key that names them, at load of a plan. */
describe('outbound TLS files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-outbound-tls-'));
  writeFileSync(path.join(dir, 'empty.pem'), '');

  it('clientTlsOptions throws a TlsFileError naming the entry and the absolute path', () => {
    expect(() => clientTlsOptions({ ca: 'nope.pem' }, dir)).toThrow(new TlsFileError('ca', `the file ${path.join(dir, 'nope.pem')} does not exist`));
    try {
      clientTlsOptions({ key: 'empty.pem' }, dir);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TlsFileError);
      expect((err as TlsFileError).entry).toBe('key');
      expect((err as Error).message).toBe(`the file ${path.join(dir, 'empty.pem')} is not PEM (no -----BEGIN line)`);
    }
  });

  it('checkClientTls: one problem per unusable file, with its line when the config came from a file', async () => {
    const pki = await createTestPki();
    writeFileSync(
      path.join(dir, 'gatehouse.yaml'),
      `listen: { port: 0 }
upstreams:
  - { name: good, url: "https://127.0.0.1:1", tls: { ca: ${pki.caFile} } }
  - { name: bad, url: "https://127.0.0.1:2", tls: { ca: ./empty.pem } }
routes: [ { name: r, path: /, upstream: good, public: true } ]
`,
    );
    const config = loadConfigFile(path.join(dir, 'gatehouse.yaml'), {});
    expect(checkClientTls(config)).toEqual([
      { file: path.join(dir, 'gatehouse.yaml'), line: 4, column: 57, path: 'upstreams[1].tls.ca', message: `the file ${path.join(dir, 'empty.pem')} is not PEM (no -----BEGIN line)` },
    ]);
    // The config's value is unchanged by the locator it keeps.
    expect(Object.keys(config)).not.toContain('locate');
  });

  it('checkClientTls reads what the files hold: a broken PEM block, a key that is not the certificate\'s', async () => {
    const pki = await createTestPki();
    const one = await pki.client('one');
    const two = await pki.client('two');
    writeFileSync(path.join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
    writeFileSync(
      path.join(dir, 'gatehouse.yaml'),
      `listen: { port: 0 }
upstreams:
  - { name: good, url: "https://127.0.0.1:1", tls: { ca: ${pki.caFile}, cert: ${one.certFile}, key: ${one.keyFile} } }
  - { name: broken, url: "https://127.0.0.1:2", tls: { ca: ./broken.pem } }
  - { name: mismatched, url: "https://127.0.0.1:3", tls: { cert: ${one.certFile}, key: ${two.keyFile} } }
routes: [ { name: r, path: /, upstream: good, public: true } ]
`,
    );
    const issues = checkClientTls(loadConfigFile(path.join(dir, 'gatehouse.yaml'), {}));
    expect(issues.map((i) => [i.path, i.line])).toEqual([
      ['upstreams[1].tls.ca', 4],
      ['upstreams[2].tls.key', 5],
    ]);
    expect(issues[0]!.message).toMatch(new RegExp(`^the file ${path.join(dir, 'broken.pem').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not hold a certificate \\(`));
    expect(issues[1]!.message).toMatch(/^does not belong to the certificate in tls\.cert \(.*CN=one/);
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
