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

  it('takes { url, weight } beside plain URLs; a plain URL weighs 1', () => {
    const u = loadConfigText(config('{ name: api, targets: ["http://10.0.0.5:80", { url: "http://10.0.0.6:80", weight: 9 }, { url: "http://10.0.0.7:80", weight: 0 }] }'), 'gatehouse.yaml', {}).upstreams[0]!;
    expect(u.targets).toEqual(['http://10.0.0.5:80', 'http://10.0.0.6:80', 'http://10.0.0.7:80']);
    expect(u.weights).toEqual([1, 9, 0]);
    expect(u.url).toBe('http://10.0.0.5:80');
    const first = loadConfigText(config('{ name: api, targets: [{ url: "http://10.0.0.6:80", weight: 2 }] }'), 'gatehouse.yaml', {}).upstreams[0]!;
    expect(first.url).toBe('http://10.0.0.6:80');
  });

  it.each<[string, string, string, RegExp]>([
    ['every target drained (weight 0)', '{ name: api, targets: [{ url: "http://a:1", weight: 0 }, { url: "http://b:1", weight: 0 }] }', 'upstreams[0].targets', /every target weight 0: no request could be sent/],
    ['a negative weight', '{ name: api, targets: [{ url: "http://a:1", weight: -1 }] }', 'upstreams[0].targets[0].weight', /must be >= 0/],
    ['a weight over 1000', '{ name: api, targets: ["http://b:1", { url: "http://a:1", weight: 5000 }] }', 'upstreams[0].targets[1].weight', /must be <= 1000/],
    ['a fractional weight', '{ name: api, targets: [{ url: "http://a:1", weight: 1.5 }] }', 'upstreams[0].targets[0].weight', /must be an integer/],
    ['a target object without url', '{ name: api, targets: [{ weight: 2 }] }', 'upstreams[0].targets[0]', /url/],
    ['an unknown key in a target', '{ name: api, targets: [{ url: "http://a:1", wieght: 2 }] }', 'upstreams[0].targets[0].wieght', /is not a known key \(expected one of: url, weight\)/],
    ['a weighted target on another path', '{ name: api, targets: ["http://a:1/v1", { url: "http://b:1/v2", weight: 2 }] }', 'upstreams[0].targets[1].url', /same scheme and path/],
  ])('refuses %s, naming the key', (_what, upstream, path, message) => {
    const issues = issuesOf(config(upstream));
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
