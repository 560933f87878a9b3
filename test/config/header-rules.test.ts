import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { issuesOf } from '../helpers/config.js';

/** `headers` and `routes[].headers` (docs/configuration.md, "Header rules"): the merge, and every refusal by file, line and key. */
const config = (global: string, route: string) => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
${global}
routes:
  - { name: all, path: /, upstream: api, public: true${route ? `, headers: ${route}` : ''} }
  - { name: other, path: /other, upstream: api, public: true }
`;

describe('header rules at load', () => {
  it('are absent unless set', () => {
    const loaded = loadConfigText(config('', ''), 'gatehouse.yaml', {});
    expect(loaded.routes[0]!.headers).toBeNull();
    expect(loaded.headers).toBeNull();
  });

  it("merge the top level's into every route's, the route's value winning, names lowercased", () => {
    const loaded = loadConfigText(
      config(
        'headers: { response: { remove: [Server, X-Powered-By], set: { X-Frame-Options: DENY, Cache-Control: no-store } } }',
        '{ request: { set: { X-Api-Version: "2" }, remove: [X-Debug] }, response: { set: { cache-control: "private, max-age=60" }, remove: [server] } }',
      ),
      'gatehouse.yaml',
      {},
    );
    expect(loaded.routes[0]!.headers).toEqual({
      request: { set: { 'x-api-version': '2' }, remove: ['x-debug'] },
      response: { set: { 'x-frame-options': 'DENY', 'cache-control': 'private, max-age=60' }, remove: ['server', 'x-powered-by'] },
    });
    expect(loaded.routes[1]!.headers).toEqual({
      request: { set: {}, remove: [] },
      response: { set: { 'x-frame-options': 'DENY', 'cache-control': 'no-store' }, remove: ['server', 'x-powered-by'] },
    });
  });

  it.each<[string, string, string, RegExp]>([
    ['setting Authorization upstream (the token is gatehouse\'s to forward)', '{ request: { set: { Authorization: "Bearer x" } } }', 'routes[0].headers.request.set.Authorization', /cannot set authorization on the request: gatehouse forwards the validated token/],
    ['removing X-Forwarded-For', '{ request: { remove: [x-forwarded-for] } }', 'routes[0].headers.request.remove[0]', /cannot remove x-forwarded-for on the request: gatehouse sets the forwarding headers/],
    ['setting Host', '{ request: { set: { host: internal } } }', 'routes[0].headers.request.set.host', /cannot set host/],
    ['a framing header', '{ response: { remove: [Transfer-Encoding] } }', 'routes[0].headers.response.remove[0]', /cannot remove transfer-encoding: it frames the message/],
    ['setting Content-Length', '{ response: { set: { content-length: "5" } } }', 'routes[0].headers.response.set.content-length', /frames the message/],
    ['setting HSTS on the answer', '{ response: { set: { Strict-Transport-Security: max-age=1 } } }', 'routes[0].headers.response.set.Strict-Transport-Security', /listen\[\]\.tls\.hsts/],
    ['removing X-Request-Id from the answer', '{ response: { remove: [x-request-id] } }', 'routes[0].headers.response.remove[0]', /gatehouse sets it/],
    ['setting a CORS header', '{ response: { set: { Access-Control-Allow-Origin: "*" } } }', 'routes[0].headers.response.set.Access-Control-Allow-Origin', /cors section/],
    ['setting a cookie', '{ response: { set: { Set-Cookie: "a=b" } } }', 'routes[0].headers.response.set.Set-Cookie', /cookies are the upstream/],
    ['a name that is not a token', '{ request: { set: { "x bad": "1" } } }', 'routes[0].headers.request.set.x bad', /is not a header name/],
    ['a value with a line break (header injection)', '{ request: { set: { x-a: "1\\r\\nx-admin: true" } } }', 'routes[0].headers.request.set.x-a', /printable ASCII, no line breaks/],
    ['a non-ASCII value', '{ response: { set: { x-a: "café" } } }', 'routes[0].headers.response.set.x-a', /printable ASCII/],
    ['an empty value', '{ response: { set: { x-a: "" } } }', 'routes[0].headers.response.set.x-a', /printable ASCII/],
    ['the same name twice in two spellings', '{ request: { set: { X-A: "1", x-a: "2" } } }', 'routes[0].headers.request.set.x-a', /is set twice/],
    ['an unknown key', '{ requests: { set: { x-a: "1" } } }', 'routes[0].headers.requests', /is not a known key \(expected one of: request, response\)/],
  ])('refuses %s, at its key and line', (_what, rules, path, message) => {
    const issues = issuesOf(config('', rules));
    const issue = issues.find((i) => i.path === path);
    expect(issue, JSON.stringify(issues)).toBeDefined();
    expect(issue!.line).toBe(5);
    expect(issue!.message).toMatch(message);
  });

  it('refuses a bad top-level rule once, at the top level', () => {
    const issues = issuesOf(config('headers: { request: { set: { Authorization: "Bearer x" } } }', ''));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'headers.request.set.Authorization', line: 3 });
  });

  it('refuses a header that forwardClaims also sets', () => {
    const text = `listen: { port: 0 }
issuers: [ { name: main, issuer: 'https://id.example.test', jwksUri: 'https://id.example.test/jwks', audiences: [api] } ]
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - { name: all, path: /, upstream: api, forwardClaims: { X-User: sub }, headers: { request: { remove: [x-user] } } }
`;
    const issues = issuesOf(text);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: 'routes[0].forwardClaims.X-User', line: 5 });
    expect(issues[0]!.message).toMatch(/also in the route's headers\.request rules/);
  });
});
