import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { loadConfigFile } from '../../src/config/load.js';
import { checkListenerTls } from '../../src/server/tls.js';
import { createTestPki, type CertFiles, type TestPki } from '../helpers/certs.js';

let pki: TestPki;
let good: CertFiles;
let other: CertFiles;
const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-tls-validate-'));

function configFile(name: string, listen: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `listen: ${listen}\nupstreams: [{ name: a, url: "http://127.0.0.1:1" }]\nroutes: [{ name: r, path: /, upstream: a, public: true }]\n`);
  return file;
}

beforeAll(async () => {
  pki = await createTestPki();
  good = await pki.server('good');
  other = await pki.server('other');
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('certificate checks without starting', () => {
  it('finds nothing wrong with a good listener', () => {
    const file = configFile('ok.yaml', `{ port: 8443, tls: { cert: ${good.certFile}, key: ${good.keyFile} } }`);
    expect(checkListenerTls(loadConfigFile(file))).toEqual([]);
  });

  it('names the listener, the SNI entry and the problem', () => {
    const file = configFile(
      'bad.yaml',
      `[{ port: 8443, tls: { cert: ${good.certFile}, key: ${other.keyFile} } }, { port: 8444, tls: { cert: ${good.certFile}, key: ${good.keyFile}, sni: [{ cert: /nope/x.pem, key: /nope/x-key.pem }] } }, { port: 8445, tls: { cert: ${good.certFile}, key: ${good.keyFile}, requestCert: optional } }]`,
    );
    const issues = checkListenerTls(loadConfigFile(file));
    expect(issues.map((i) => i.path)).toEqual(['listen[0].tls', 'listen[1].tls.sni[0]', 'listen[2].tls.clientCa']);
    expect(issues[0]!.message).toMatch(/does not belong/);
    expect(issues[1]!.message).toMatch(/cannot be read \(ENOENT\)/);
  });

  it('gatehouse validate reports them and exits 3', async () => {
    const file = configFile('validate.yaml', `{ port: 8443, tls: { cert: ${good.certFile}, key: ${other.keyFile} } }`);
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    expect(await main(['validate', '--config', file])).toBe(3);
    expect(lines.join('')).toMatch(/listen\[0\]\.tls key .* does not belong to certificate/);
  });
});
