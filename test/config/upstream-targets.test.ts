import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { issuesOf } from '../helpers/config.js';

/** `upstreams[].targets` and `downFor` (docs/configuration.md): what loads, and every bad value named by file, line and key. */
const config = (upstream: string) => `listen: { port: 0 }
upstreams:
  - ${upstream}
routes:
  - { name: all, path: /, upstream: api, public: true }
`;

describe('upstreams[].targets at load', () => {
  it('an upstream with url has that one target, left out for 10s when unreachable', () => {
    const u = loadConfigText(config('{ name: api, url: "http://10.0.0.5:8080/v1" }'), 'gatehouse.yaml', {}).upstreams[0]!;
    expect(u.url).toBe('http://10.0.0.5:8080/v1');
    expect(u.targets).toEqual(['http://10.0.0.5:8080/v1']);
    expect(u.downFor).toBe(10_000);
  });

  it('takes several instances of one upstream, and downFor with a unit', () => {
    const u = loadConfigText(config('{ name: api, targets: ["https://10.0.0.5:8443/v1", "https://10.0.0.6:8443/v1/"], downFor: 30s }'), 'gatehouse.yaml', {}).upstreams[0]!;
    expect(u.targets).toEqual(['https://10.0.0.5:8443/v1', 'https://10.0.0.6:8443/v1/']);
    expect(u.url).toBe('https://10.0.0.5:8443/v1');
    expect(u.downFor).toBe(30_000);
  });

  it.each<[string, string, string, RegExp]>([
    ['both url and targets', '{ name: api, url: "http://a:1", targets: ["http://b:1"] }', 'upstreams[0].targets', /cannot be combined with url/],
    ['neither', '{ name: api }', 'upstreams[0]', /needs a url \(or targets/],
    ['mixed schemes', '{ name: api, targets: ["http://a:1", "https://b:1"] }', 'upstreams[0].targets[1]', /must have the same scheme and path as targets\[0\] \(http:\/\/…\/\)/],
    ['different paths', '{ name: api, targets: ["http://a:1/v1", "http://b:1/v2"] }', 'upstreams[0].targets[1]', /same scheme and path/],
    ['the same host and port twice (spelled two ways)', '{ name: api, targets: ["http://a:80/v1", "http://a/v1"] }', 'upstreams[0].targets[1]', /the same host and port as an earlier target \(http:\/\/a\)/],
    ['a query', '{ name: api, targets: ["http://a:1", "http://b:1/?x=1"] }', 'upstreams[0].targets[1]', /must not carry a query or fragment/],
    ['credentials', '{ name: api, targets: ["http://u:p@a:1"] }', 'upstreams[0].targets[0]', /must not carry credentials/],
    ['not a URL', '{ name: api, targets: ["http://a:1", "ftp://b"] }', 'upstreams[0].targets[1]', /http/],
    ['an empty list', '{ name: api, targets: [] }', 'upstreams[0].targets', /at least 1/],
    ['a bad duration', '{ name: api, url: "http://a:1", downFor: soon }', 'upstreams[0].downFor', /./],
  ])('refuses %s, naming the key and line', (_what, upstream, path, message) => {
    const issues = issuesOf(config(upstream));
    expect(issues.length).toBeGreaterThan(0);
    const issue = issues.find((i) => i.path === path);
    expect(issue, JSON.stringify(issues)).toBeDefined();
    expect(issue!.line).toBe(3);
    expect(issue!.message).toMatch(message);
  });

  it('refuses more than 32 targets', () => {
    const many = Array.from({ length: 33 }, (_, i) => `"http://10.0.0.${i + 1}:80"`).join(', ');
    expect(issuesOf(config(`{ name: api, targets: [${many}] }`)).map((i) => i.path)).toContain('upstreams[0].targets');
  });
});
