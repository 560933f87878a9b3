import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { watchCertificateFiles } from '../../src/server/cert-watch.js';

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('watchCertificateFiles', () => {
  it('coalesces a burst of writes into one call after the debounce', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-watch-'));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    writeFileSync(cert, 'a');
    writeFileSync(key, 'a');
    let calls = 0;
    const watcher = watchCertificateFiles([cert, key], () => calls++, { debounce: 100 });
    try {
      for (let i = 0; i < 5; i++) {
        writeFileSync(cert, `c${i}`);
        writeFileSync(key, `k${i}`);
      }
      await until(() => calls > 0);
      await new Promise((r) => setTimeout(r, 250));
      expect(calls).toBe(1);
    } finally {
      watcher.close();
    }
  });

  it('sees a file renamed into place (certbot, editors)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-watch-'));
    const cert = path.join(dir, 'cert.pem');
    writeFileSync(cert, 'old');
    let calls = 0;
    const watcher = watchCertificateFiles([cert], () => calls++, { debounce: 20 });
    try {
      writeFileSync(path.join(dir, 'cert.pem.tmp'), 'new');
      renameSync(path.join(dir, 'cert.pem.tmp'), cert);
      await until(() => calls === 1);
    } finally {
      watcher.close();
    }
  });

  it('sees a Kubernetes-style ..data symlink swap', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-watch-'));
    mkdirSync(path.join(dir, '..v1'));
    writeFileSync(path.join(dir, '..v1', 'tls.crt'), 'v1');
    symlinkSync('..v1', path.join(dir, '..data'));
    symlinkSync('..data/tls.crt', path.join(dir, 'tls.crt'));
    let calls = 0;
    const watcher = watchCertificateFiles([path.join(dir, 'tls.crt')], () => calls++, { debounce: 20 });
    try {
      mkdirSync(path.join(dir, '..v2'));
      writeFileSync(path.join(dir, '..v2', 'tls.crt'), 'v2');
      symlinkSync('..v2', path.join(dir, '..data_tmp'));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      await until(() => calls >= 1);
    } finally {
      watcher.close();
    }
  });

  it('calls nothing after close', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-watch-'));
    const cert = path.join(dir, 'cert.pem');
    writeFileSync(cert, 'a');
    let calls = 0;
    const watcher = watchCertificateFiles([cert], () => calls++, { debounce: 30 });
    writeFileSync(cert, 'b');
    watcher.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(0);
  });

  it('reports a directory it cannot watch instead of throwing', () => {
    const errors: Error[] = [];
    const watcher = watchCertificateFiles(['/nonexistent-dir-for-gatehouse/cert.pem'], () => undefined, { debounce: 10, onError: (e) => errors.push(e) });
    watcher.close();
    expect(errors).toHaveLength(1);
  });
});
