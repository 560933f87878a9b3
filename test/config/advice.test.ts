import { describe, expect, it } from 'vitest';
import { configAdvice } from '../../src/config/advice.js';
import { configIssue } from '../../src/config/issue.js';
import { loadConfigText } from '../../src/config/load.js';
import { formatConfigIssue } from '../../src/errors.js';

/** Settings that load but weaken what gatehouse protects: each named with its line and key. */
const advised = (text: string) => {
  const config = loadConfigText(text, 'gatehouse.yaml', {});
  return configAdvice(config).map((a) => formatConfigIssue(configIssue(config, a.path, a.message)));
};

describe('configAdvice: what is warned of', () => {
  it('plain HTTP off loopback (listener without any TLS listener, upstream url or target), an open admin listener', () => {
    const lines = advised(`listen: { host: 0.0.0.0, port: 8080 }
admin: { host: 0.0.0.0, port: 9090 }
upstreams:
  - { name: a, url: "http://10.0.0.5:8080" }
  - { name: b, targets: ["http://127.0.0.1:8080", "http://10.0.0.7:8080"] }
  - { name: c, targets: ["http://10.0.0.8:8080"] }
routes:
  - { name: r, path: /, upstream: a, public: true }
`);
    expect(lines).toEqual([
      'gatehouse.yaml:1:9 listen[0].host plain HTTP listener on a non-loopback address: configure tls, or allowPlaintext behind a TLS-terminating proxy',
      expect.stringMatching(/^gatehouse\.yaml:4:21 upstreams\[0\]\.url plain HTTP upstream on a non-loopback address: requests and the tokens they carry cross the network unencrypted/),
      expect.stringMatching(/^gatehouse\.yaml:5:51 upstreams\[1\]\.targets\[1\] plain HTTP upstream on a non-loopback address/),
      expect.stringMatching(/^gatehouse\.yaml:6:\d+ upstreams\[2\]\.targets\[0\] plain HTTP upstream on a non-loopback address/),
      expect.stringMatching(/^gatehouse\.yaml:2:16 admin\.host admin listener on a non-loopback address without admin\.allowFrom/),
    ]);
  });

  it('method overrides allowed; a public route that lists writes with no rate limit, quota or preAuthLimit', () => {
    const lines = advised(`listen: { port: 8080 }
gateway: { methodOverride: allow }
upstreams: [ { name: a, url: "http://127.0.0.1:9" } ]
routes:
  - { name: signup, path: /signup, methods: [GET, POST], upstream: a, public: true }
`);
    expect(lines).toEqual([
      expect.stringMatching(/^gatehouse\.yaml:2:28 gateway\.methodOverride method overrides allowed: an upstream that honours X-HTTP-Method-Override or _method executes another method/),
      expect.stringMatching(/^gatehouse\.yaml:5:45 routes\[0\]\.methods public route that takes writes with no rate limit, quota or preAuthLimit/),
    ]);
  });
});

describe('configAdvice: what is not', () => {
  it('loopback, https, a TLS listener beside a plain one, admin.allowFrom, limited or read-only public routes', () => {
    expect(
      advised(`listen:
  - { name: plain, host: 0.0.0.0, port: 8080 }
  - { name: https, host: 0.0.0.0, port: 8443, tls: { cert: c.pem, key: k.pem } }
admin: { host: 0.0.0.0, port: 9090, allowFrom: [10.0.0.0/8] }
rateLimits: [ { name: per-ip, limit: 10, window: 1m, key: ip } ]
upstreams:
  - { name: a, url: "https://10.0.0.5:8443" }
  - { name: b, url: "http://localhost:8080" }
routes:
  - { name: signup, path: /signup, methods: [POST], upstream: a, public: true, rateLimits: [per-ip] }
  - { name: health, path: /health, methods: [GET], upstream: b, public: true }
  - { name: any, path: /any, upstream: b, public: true }
`),
    ).toEqual([]);
    expect(advised(`listen: { port: 8080 }\npreAuthLimit: { limit: 100, window: 1m }\nupstreams: [ { name: a, url: "http://127.0.0.1:9" } ]\nroutes: [ { name: w, path: /w, methods: [DELETE], upstream: a, public: true } ]\n`)).toEqual([]);
  });
});
