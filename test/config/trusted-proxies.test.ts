import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfigText } from '../../src/config/load.js';
import { main } from '../../src/cli/main.js';
import { formatConfigIssue, type ConfigIssue } from '../../src/errors.js';
import { issuesOf } from '../helpers/config.js';

// Line 4 holds the trustedProxies list; entries are quoted so YAML passes them through as text.
const withProxies = (entries: string[]) =>
  [
    'listen: { host: 127.0.0.1, port: 0 }',
    'workers: 1',
    'upstreams: [{ name: api, url: "http://127.0.0.1:1" }]',
    `trustedProxies: [${entries.map((e) => JSON.stringify(e)).join(', ')}]`,
    'routes: [{ name: r, path: /, upstream: api, public: true }]',
    '',
  ].join('\n');


describe('trustedProxies at load', () => {
  it('accepts addresses and CIDRs of both families', () => {
    const config = loadConfigText(withProxies(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32', '::1']), 'gatehouse.yaml', {});
    expect(config.trustedProxies).toEqual(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32', '::1']);
    expect(loadConfigText(withProxies([]), 'gatehouse.yaml', {}).trustedProxies).toEqual([]);
  });

  it('refuses "10.0.0.0/" (an empty prefix, read as /0: every peer trusted) with file:line and key', () => {
    const issues = issuesOf(withProxies(['127.0.0.1', '10.0.0.0/']));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: 'gatehouse.yaml', line: 4, path: 'trustedProxies[1]' });
    expect(formatConfigIssue(issues[0]!)).toMatch(/^gatehouse\.yaml:4:\d+ trustedProxies\[1\] "10\.0\.0\.0\/" is not an IP address or CIDR \(prefix missing\)$/);
  });

  it('names every bad entry: a non-numeric or out-of-range prefix, a name, and a /0', () => {
    const issues = issuesOf(withProxies(['10.0.0.0/x', '10.0.0.0/33', '2001:db8::/129', 'proxy.internal', '0.0.0.0/0', '::/0', '10.1.0.0/16']));
    expect(issues.map((i) => i.path)).toEqual(['trustedProxies[0]', 'trustedProxies[1]', 'trustedProxies[2]', 'trustedProxies[3]', 'trustedProxies[4]', 'trustedProxies[5]']);
    expect(issues.every((i) => i.line === 4)).toBe(true);
    expect(issues[4]!.message).toMatch(/every IPv4 address.*list the proxies' own addresses/);
    expect(issues[5]!.message).toMatch(/every IPv6 address.*list the proxies' own addresses/);
  });
});

describe('gatehouse validate / start with a bad trustedProxies entry', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-tp-'));
  let stderr = '';
  const capture = () => {
    stderr = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  };
  afterEach(() => vi.restoreAllMocks());

  it('validate exits 3 and prints file:line key and why', async () => {
    const file = path.join(dir, 'slash.yaml');
    writeFileSync(file, withProxies(['10.0.0.0/']));
    capture();
    const code = await main(['validate', '--config', file]);
    vi.restoreAllMocks();
    expect(code).toBe(3);
    expect(stderr).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:4:\\d+ trustedProxies\\[0\\] "10\\.0\\.0\\.0/" is not an IP address or CIDR \\(prefix missing\\)$`, 'm'));
  });

  it('start exits 3 with the same message, before anything starts', async () => {
    const file = path.join(dir, 'range.yaml');
    writeFileSync(file, withProxies(['10.0.0.0/x']));
    capture();
    const code = await main(['start', '--config', file]);
    vi.restoreAllMocks();
    expect(code).toBe(3);
    expect(stderr).toMatch(/:4:\d+ trustedProxies\[0\] "10\.0\.0\.0\/x" has an invalid prefix length/);
    expect(stderr).toMatch(/nothing was started/);
  });
});
