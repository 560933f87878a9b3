// The package's `main` entry (package.json → dist/index.js) exists after the build and starts a
// working gateway: what a user who `import`s gatehouse gets.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('package entry', () => {
  it('dist/index.js is the package main and starts a gateway that answers and denies by default', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main: string; types: string };
    const main = path.join(ROOT, pkg.main);
    expect(existsSync(main)).toBe(true);
    expect(existsSync(path.join(ROOT, pkg.types))).toBe(true);
    const lib = (await import(pathToFileURL(main).href)) as typeof import('../../src/index.js');
    const config = lib.loadConfigText(
      `listen: { host: 127.0.0.1, port: 0 }
log: { level: silent }
issuers:
  - { name: main, issuer: https://issuer.example, jwksUri: http://127.0.0.1:9/jwks, audiences: [api] }
upstreams: [{ name: api, url: http://127.0.0.1:9 }]
routes: [{ name: orders, path: /orders, upstream: api }]
`,
      path.join(ROOT, 'inline.yaml'),
    );
    const gateway = await lib.startGateway({ config, logDestination: { write() {} } });
    try {
      const url = Object.values(gateway.urls)[0];
      const res = await request(`${url}/orders`);
      expect(res.statusCode).toBe(401);
      expect(((await res.body.json()) as { code: string }).code).toBe('GH_ERR_AUTH_MISSING_TOKEN');
      expect(() => lib.loadConfigText('listen: {}', 'bad.yaml')).toThrow(lib.ConfigError);
    } finally {
      await gateway.close();
    }
  });
});
