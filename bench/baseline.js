// The Node floor for `npm run bench` (issue 8): a bare `node:http` server that passes every
// request through one undici `Pool` with the lowest-overhead API (`dispatch` + a handler that
// streams into the response). No routing, no authentication, no logging: what gatehouse is
// compared with, in the same run.
//
//   node bench/baseline.js <port> <upstream-origin> [jose|sync <jwks-uri> <issuer> <audience>]
//
// With `jose` or `sync` it is the reference for JWT validation without a cache (the issue's
// peers): every request's bearer token is verified before it is passed through, with `jose`
// `jwtVerify` (a local JWK Set), or with synchronous `node:crypto.verify` and KeyObjects
// cached per `kid` (+ iss/aud/exp checks). A token that fails gets 401.
//
// With `headers` it passes every request through like the floor and also sends what issue 2
// has gatehouse send on every forwarded request, as a bare pass-through would write it:
// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded` and an
// `X-Request-Id` (made per request, also on the answer). The like-for-like floor of the
// public route (`reference: pass-through + the same headers`).
//
// Prints `listening <port>` on stdout once bound.
//
// The one thing it shares with gatehouse: the first import holds one `process.nextTick` tick
// object for the life of the process (src/boot/tick-shape.ts, from dist/). Without it a full GC
// that runs while no tick object is alive sends every later `nextTick` through a V8 runtime call
// (`Runtime_DefineKeyedOwnPropertyInLiteral` under `perf`, from `nextTick`): about 1.5 µs per
// request, in some baseline processes and not in others, for their whole life. gatehouse never
// pays it, so a baseline without the hold is a floor that moves from one process to the next.
import '../dist/boot/tick-shape.js';
// `headers` mode writes the forwarding headers and request ids with gatehouse's own helpers.
import { forwardedElement } from '../dist/forward/headers.js';
import { nextRequestId } from '../dist/respond/request-id.js';
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import http from 'node:http';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const [portArg, origin, verifyMode, jwksUri, issuer, audience] = process.argv.slice(2);
const FORWARDING = verifyMode === 'headers';
if (!portArg || !origin) {
  process.stderr.write('usage: node bench/baseline.js <port> <upstream-origin>\n');
  process.exit(2);
}
const upstreamHost = new URL(origin).host;
const pool = new Pool(origin, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 });

class Handler {
  constructor(res, id = null) {
    this.res = res;
    this.id = id;
    this.controller = null;
  }
  onRequestStart() {}
  onResponseStart(controller, statusCode, headers) {
    if (statusCode < 200) return;
    const res = this.res;
    // A client that left: stop the upstream exchange (a paused one would hold its connection forever).
    if (res.destroyed) return controller.abort(new Error('client closed'));
    for (const name in headers) if (!HOP_BY_HOP.has(name)) res.setHeader(name, headers[name]);
    if (this.id !== null) res.setHeader('x-request-id', this.id);
    res.statusCode = statusCode;
  }
  onResponseData(controller, chunk) {
    if (this.res.write(chunk) !== false) return;
    if (this.res.destroyed) return controller.abort(new Error('client closed'));
    controller.pause();
    if (this.controller === null) {
      this.controller = controller;
      this.res.on('drain', () => controller.resume());
    }
  }
  onResponseEnd() {
    this.res.end();
  }
  onResponseError(_controller, err) {
    if (this.res.headersSent) this.res.destroy(err);
    else {
      this.res.statusCode = 502;
      this.res.end();
    }
  }
}

// --- optional JWT validation (references for the cold-path target) ---
let verifier = null;
if (verifyMode === 'jose' || verifyMode === 'sync') {
  const jwks = await (await fetch(jwksUri)).json();
  if (verifyMode === 'jose') {
    const keySet = createLocalJWKSet(jwks);
    const options = { issuer, audience, algorithms: ['RS256', 'ES256', 'EdDSA'] };
    verifier = (token) => jwtVerify(token, keySet, options).then(
      () => true,
      () => false,
    );
  } else {
    const HASH = { RS256: 'sha256', ES256: 'sha256', EdDSA: null };
    const keys = new Map();
    for (const jwk of jwks.keys) {
      const key = createPublicKey({ key: jwk, format: 'jwk' });
      keys.set(jwk.kid, { alg: jwk.alg, input: jwk.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key });
    }
    verifier = (token) => {
      try {
        const dot1 = token.indexOf('.');
        const dot2 = token.lastIndexOf('.');
        const header = JSON.parse(Buffer.from(token.slice(0, dot1), 'base64url').toString());
        const key = keys.get(header.kid);
        if (!key || key.alg !== header.alg) return false;
        if (!cryptoVerify(HASH[header.alg], Buffer.from(token.slice(0, dot2), 'latin1'), key.input, Buffer.from(token.slice(dot2 + 1), 'base64url'))) return false;
        const claims = JSON.parse(Buffer.from(token.slice(dot1 + 1, dot2), 'base64url').toString());
        const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
        return claims.iss === issuer && aud.includes(audience) && typeof claims.exp === 'number' && claims.exp * 1000 > Date.now();
      } catch {
        return false;
      }
    };
  }
}

function unauthorized(res) {
  res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-length': 0 });
  res.end();
}

function passThrough(req, res) {
  const raw = req.rawHeaders;
  const headers = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    if (lower === 'host' || HOP_BY_HOP.has(lower)) continue;
    headers.push(raw[i], raw[i + 1]);
  }
  headers.push('host', upstreamHost);
  let id = null;
  if (FORWARDING) {
    const ip = req.socket.remoteAddress;
    const host = req.headers.host;
    id = nextRequestId();
    headers.push('x-forwarded-for', ip, 'x-forwarded-proto', 'http', 'x-forwarded-host', host, 'forwarded', forwardedElement(ip, 'http', host), 'x-request-id', id);
  }
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  pool.dispatch({ origin, path: req.url, method: req.method, headers, body: hasBody ? req : null, blocking: false }, new Handler(res, id));
}

const server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
  if (verifier === null) return passThrough(req, res);
  const auth = req.headers.authorization;
  if (typeof auth !== 'string' || !auth.startsWith('Bearer ')) return unauthorized(res);
  const ok = verifier(auth.slice(7));
  if (ok === true) return passThrough(req, res);
  if (ok === false) return unauthorized(res);
  ok.then((valid) => (valid ? passThrough(req, res) : unauthorized(res)));
});

server.listen(Number(portArg), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
const stop = () => server.close(() => void pool.close().then(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
