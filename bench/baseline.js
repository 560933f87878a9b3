// The Node floor for `npm run bench` (issue 8): a bare `node:http` server that passes every
// request through one undici `Pool` with the lowest-overhead API (`dispatch` + a handler that
// streams into the response). No routing, no authentication, no logging: what gatehouse is
// compared with, in the same run.
//
//   node bench/baseline.js <port> <upstream-origin>
//
// Prints `listening <port>` on stdout once bound.
import http from 'node:http';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const [portArg, origin] = process.argv.slice(2);
if (!portArg || !origin) {
  process.stderr.write('usage: node bench/baseline.js <port> <upstream-origin>\n');
  process.exit(2);
}
const upstreamHost = new URL(origin).host;
const pool = new Pool(origin, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 });

class Handler {
  constructor(res) {
    this.res = res;
  }
  onRequestStart() {}
  onResponseStart(controller, statusCode, headers) {
    if (statusCode < 200) return;
    const res = this.res;
    for (const name in headers) if (!HOP_BY_HOP.has(name)) res.setHeader(name, headers[name]);
    res.statusCode = statusCode;
    res.on('drain', () => controller.resume());
  }
  onResponseData(controller, chunk) {
    if (this.res.write(chunk) === false) controller.pause();
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

const server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
  const raw = req.rawHeaders;
  const headers = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    if (lower === 'host' || HOP_BY_HOP.has(lower)) continue;
    headers.push(raw[i], raw[i + 1]);
  }
  headers.push('host', upstreamHost);
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  pool.dispatch({ origin, path: req.url, method: req.method, headers, body: hasBody ? req : null, blocking: false }, new Handler(res));
});

server.listen(Number(portArg), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
const stop = () => server.close(() => void pool.close().then(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
