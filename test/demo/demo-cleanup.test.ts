import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startDemo } from '../../src/demo/main.js';

// The demo writes its development certificate's key and its config into a temporary directory:
// it must not outlive the demo, and a start that fails must not leave servers or files behind.
const free = { gateway: 0, admin: 0, issuer: 0, api: 0, spa: 0 };

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Whether a loopback port can be bound now (nothing listens on it). */
async function bindable(port: number): Promise<boolean> {
  const probe = net.createServer();
  return new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

function demoDirs(): Set<string> {
  return new Set(readdirSync(tmpdir()).filter((name) => name.startsWith('gatehouse-demo-')));
}

describe('the demo cleans up after itself', () => {
  it('close() removes its temporary directory (certificate key and config)', async () => {
    const demo = await startDemo({ quiet: true, ports: free });
    const dir = path.dirname(demo.configFile);
    expect(existsSync(demo.configFile)).toBe(true);
    await demo.close();
    expect(existsSync(dir)).toBe(false);
  });

  it('a start that fails (a port in use) stops what it started and leaves no directory', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as net.AddressInfo).port;
    const before = demoDirs();
    const spa = await freePort();
    const issuer = await freePort();
    try {
      // The API starts after the SPA and the issuer: both must be stopped again.
      await expect(startDemo({ quiet: true, ports: { ...free, spa, issuer, api: taken } })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      blocker.close();
    }
    expect(await bindable(spa)).toBe(true);
    expect(await bindable(issuer)).toBe(true);
    const left = [...demoDirs()].filter((name) => !before.has(name));
    expect(left).toEqual([]);
  });
});
