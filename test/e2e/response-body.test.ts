import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2connect, h2request } from '../server/tls-client.js';
import { DEMO_CLIENT_SECRETS, startAuthorizationServer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

/**
 * `routes[].responseBody` end to end: a real authorization server, gatehouse, and an upstream
 * that answers what each test asks of it — the answers a contract lets through, and those it
 * must not (a field too many, a password, a key twice, HTML, gzip, too long).
 */
let as: Awaited<ReturnType<typeof startAuthorizationServer>>;
let api: TestUpstream;
let gw: TestGateway;
let token: string;
let openapiFile: string;

const USER_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    name: { type: 'string' },
    password: { type: 'string', writeOnly: true },
  },
  required: ['id', 'name', 'password'],
  additionalProperties: false,
};

/** What the upstream answers for each path (status, headers, body); a function for streamed bodies. */
type Answer = { status: number; headers?: Record<string, string>; body?: string | Buffer; chunks?: string[]; stall?: boolean };
const answers = new Map<string, Answer>();

function json(status: number, value: unknown, extra: Record<string, string> = {}): Answer {
  return { status, headers: { 'content-type': 'application/json', ...extra }, body: typeof value === 'string' ? value : JSON.stringify(value) };
}

const yaml = () => `
listen: { host: 127.0.0.1, port: 0 }
issuers:
  - { name: main, issuer: ${as.issuer}, jwksUri: ${as.jwksUri}, audiences: [https://api.example.com] }
upstreams:
  - { name: api, url: ${api.url} }
routes:
  - name: users
    path: /users
    upstream: api
    methods: [GET, HEAD, POST, DELETE]
    responseBody:
      schemas:
        "200": ${JSON.stringify(USER_SCHEMA)}
        "4XX": { type: object, properties: { error: { type: string } }, required: [error], additionalProperties: false }
      maxSize: 2kb
  - name: strict
    path: /strict
    upstream: api
    public: true
    responseBody:
      schemas: { "200": { type: object } }
      unlisted: refuse
  - name: report
    path: /report
    upstream: api
    public: true
    responseBody:
      schemas: { "200": ${JSON.stringify(USER_SCHEMA)} }
      maxSize: 1kb
      onInvalid: log
  - name: pets
    path: /pets
    upstream: api
    public: true
    responseBody:
      schemas:
        "200": "${openapiFile}#/paths/~1pets~1{id}/get/responses/200/content/application~1json/schema"
        default: "${openapiFile}#/components/schemas/Problem"
  - { name: plain, path: /plain, upstream: api, public: true }
  - { name: slow, path: /slow, upstream: api, public: true, timeout: 400ms, responseBody: { schemas: { "200": ${JSON.stringify(USER_SCHEMA)} } } }
`;

async function get(pathname: string, headers: Record<string, string> = { authorization: `Bearer ${token}` }, method = 'GET') {
  const before = api.requests.length;
  const res = await request(`${gw.url}${pathname}`, { method: method as 'GET', headers });
  const text = await res.body.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: res.statusCode, headers: res.headers, text, json: parsed, forwarded: api.requests.slice(before) };
}

beforeAll(async () => {
  as = await startAuthorizationServer({ audience: 'https://api.example.com' });
  api = await startUpstream();
  api.setHandler((req, res) => {
    const answer = answers.get(new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/(users|strict|report|pets|plain|slow)/, '')) ?? json(200, { id: 1, name: 'Ann' });
    if (answer.chunks) {
      res.writeHead(answer.status, answer.headers);
      const chunks = [...answer.chunks];
      const next = () => {
        const chunk = chunks.shift();
        if (chunk === undefined) return answer.stall ? undefined : res.end();
        res.write(chunk);
        setTimeout(next, 5);
      };
      return next();
    }
    const body = answer.body ?? '';
    res.writeHead(answer.status, { ...answer.headers, 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  token = await as.clientCredentialsToken('demo-client', DEMO_CLIENT_SECRETS['demo-client'], 'orders:read');
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-answer-'));
  openapiFile = path.join(dir, 'openapi.yaml');
  writeFileSync(
    openapiFile,
    `openapi: 3.0.3
info: { title: Pets, version: "1.0" }
paths:
  /pets/{id}:
    get:
      responses:
        "200":
          description: a pet
          content:
            application/json:
              schema: { $ref: '#/components/schemas/Pet' }
components:
  schemas:
    Pet:
      type: object
      properties:
        id: { type: integer, readOnly: true }
        name: { type: string }
        tag: { type: string, nullable: true }
        secret: { type: string, writeOnly: true }
      required: [id, name, secret]
      additionalProperties: false
    Problem:
      type: object
      properties: { title: { type: string }, status: { type: integer } }
      required: [title]
`,
  );
  answers.set('/1', json(200, { id: 1, name: 'Ann' }));
  answers.set('/leak', json(200, { id: 1, name: 'Ann', ssn: '123-45-6789' }));
  answers.set('/password', json(200, { id: 1, name: 'Ann', password: 'hunter2-secret' }));
  answers.set('/wrongtype', json(200, { id: 'one', name: 'Ann' }));
  answers.set('/twice', json(200, '{"id":1,"name":"Ann","name":"Zed-the-admin"}'));
  answers.set('/html', { status: 200, headers: { 'content-type': 'text/html' }, body: '<p>Ann, 123-45-6789</p>' });
  answers.set('/latin1', json(200, { id: 1, name: 'Ann' }, { 'content-type': 'application/json; charset=iso-8859-1' }));
  answers.set('/gzip', json(200, { id: 1, name: 'Ann' }, { 'content-encoding': 'gzip' }));
  answers.set('/empty', { status: 200, headers: { 'content-type': 'application/json' }, body: '' });
  answers.set('/big', json(200, { id: 1, name: 'A'.repeat(3000) }));
  answers.set('/bigchunks', { status: 200, headers: { 'content-type': 'application/json' }, chunks: ['{"id":1,"name":"', 'B'.repeat(1500), 'B'.repeat(1500), '"}'] });
  answers.set('/chunked', { status: 200, headers: { 'content-type': 'application/json', 'x-upstream': 'kept' }, chunks: ['{"id": 7,', '  "name": "Chunk"', '}'] });
  answers.set('/notfound', json(404, { error: 'no such user' }));
  answers.set('/notfound-leak', json(404, { error: 'no such user', query: 'SELECT * FROM users WHERE id = 9' }));
  answers.set('/boom', { status: 500, headers: { 'content-type': 'text/plain' }, body: 'Error: at Db.query (/srv/app/db.js:10)' });
  answers.set('/gone', { status: 204 });
  answers.set('/stalls', { status: 200, headers: { 'content-type': 'application/json' }, chunks: ['{"id":1,"name":"half-sent secret'], stall: true });
  answers.set('/deep', json(200, '{"id":1,"name":"Ann","x":' + '['.repeat(80) + ']'.repeat(80) + '}'));
  answers.set('/pet', json(200, { id: 3, name: 'Rex', tag: null }));
  answers.set('/pet-secret', json(200, { id: 3, name: 'Rex', tag: null, secret: 's3cr3t-value' }));
  answers.set('/pet-problem', json(418, { title: 'teapot', status: 418 }));
  answers.set('/pet-problem-bad', json(418, { status: 418 }));
  gw = await startTestGateway(yaml());
});

afterAll(async () => {
  await gw?.close();
  await api?.close();
  await as?.stop();
});

/** The refusal every bad answer gets: 502, the code, and nothing of the upstream's body. */
function expectRefused(res: Awaited<ReturnType<typeof get>>, secret?: string) {
  expect(res.status).toBe(502);
  expect(res.json).toMatchObject({ status: 502, code: 'GH_ERR_UPSTREAM_RESPONSE_INVALID' });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  if (secret !== undefined) expect(res.text).not.toContain(secret);
  expect(res.forwarded).toHaveLength(1);
}

/** Why gatehouse refused the answer to this request (the access log's failure line), or what it let through with onInvalid: log. */
async function warning(res: Awaited<ReturnType<typeof get>>) {
  const id = res.headers['x-request-id'];
  for (let i = 0; i < 200; i++) {
    const line = gw.logs.find((l) => l.req_id === id && (l.msg === 'request failed' || l.msg.startsWith("upstream answer does not match the route's responseBody")));
    if (line) return { ...line, why: line.msg === 'request failed' ? line.detail : line.reason } as Record<string, any>;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no line for ${String(id)}`);
}

describe('responseBody: answers that never reach the client', () => {
  it('a property the schema does not allow (excessive data exposure): 502, the value never sent, the log says which', async () => {
    const res = await get('/users/leak');
    expectRefused(res, '123-45-6789');
    expect(res.text).not.toContain('ssn');
    const line = await warning(res);
    expect(line).toMatchObject({ level: 'warn', status: 502, route: 'users', reason: 'GH_ERR_UPSTREAM_RESPONSE_INVALID' });
    expect(line.detail).toBe('the answer does not match the route\'s schema, at the top level: the property "ssn" is not allowed (upstream status 200)');
    expect(JSON.stringify(gw.logs)).not.toContain('123-45-6789');
    // Counted with gatehouse's other refusals, by route and code.
    const scraped = await gw.gateway.metrics.scrape();
    expect(scraped).toMatch(/gatehouse_denials_total\{route="users",code="GH_ERR_UPSTREAM_RESPONSE_INVALID"\} [1-9]/);
    expect(scraped).toMatch(/gatehouse_upstream_answers_invalid_total\{route="users",action="refused"\} [1-9]/);
  });

  it('a property marked writeOnly (a password) is refused in an answer, and not required there', async () => {
    const res = await get('/users/password');
    expectRefused(res, 'hunter2-secret');
    expect((await warning(res))!.why).toContain('at /password: is write-only');
    // The schema requires password; in an answer, a writeOnly property is not required.
    expect((await get('/users/1')).status).toBe(200);
  });

  it('a value of the wrong type: 502 naming where', async () => {
    const res = await get('/users/wrongtype');
    expectRefused(res);
    expect((await warning(res))!.why).toContain('at /id: must be integer');
  });

  it('a key twice in one object (the client would read another value than the one checked): 502', async () => {
    const res = await get('/users/twice');
    expectRefused(res, 'Zed-the-admin');
    expect((await warning(res))!.why).toContain('the key "name" appears twice');
  });

  it('deeper than maxDepth (64 by default): 502', async () => {
    const res = await get('/users/deep');
    expectRefused(res);
    expect((await warning(res))!.why).toContain('deeper than 64 levels');
  });

  it('not JSON, or JSON in another charset: 502, the body never read out', async () => {
    const html = await get('/users/html');
    expectRefused(html, '123-45-6789');
    expect((await warning(html))!.why).toContain('Content-Type "text/html" is not JSON');
    const latin1 = await get('/users/latin1');
    expectRefused(latin1);
    expect((await warning(latin1))!.why).toContain('is not UTF-8');
  });

  it('an empty body where the status has a schema: 502', async () => {
    const res = await get('/users/empty');
    expectRefused(res);
    expect((await warning(res))!.why).toContain('has no body');
  });

  it('asks the upstream for whole, unencoded answers: the client\'s Accept-Encoding, Range and If-Range never reach it; an encoded answer is refused', async () => {
    const res = await get('/users/1', { authorization: `Bearer ${token}`, 'accept-encoding': 'gzip, br', range: 'bytes=0-4', 'if-range': '"v1"' });
    expect(res.status).toBe(200);
    const sent = res.forwarded[0]!;
    expect(sent.headers['accept-encoding']).toBe('identity');
    expect(sent.headers.range).toBeUndefined();
    expect(sent.headers['if-range']).toBeUndefined();
    expect(sent.rawHeaders.filter((h) => h.toLowerCase() === 'accept-encoding')).toHaveLength(1);
    const gzip = await get('/users/gzip');
    expectRefused(gzip);
    expect((await warning(gzip))!.why).toContain('content-encoding "gzip"');
  });

  it('longer than maxSize, announced by Content-Length or streamed: 502, never sent in part', async () => {
    const announced = await get('/users/big');
    expectRefused(announced, 'AAAAAAAAAA');
    expect((await warning(announced))!.why).toContain('over responseBody.maxSize (2048)');
    const streamed = await get('/users/bigchunks');
    expectRefused(streamed, 'BBBBBBBBBB');
    expect((await warning(streamed))!.why).toContain('over responseBody.maxSize (2048 bytes)');
    // The gateway is fine after the aborted exchanges.
    expect((await get('/users/1')).status).toBe(200);
  });

  it('an upstream that stalls in the middle of a held answer: 504 at the route\'s timeout, nothing of it sent', async () => {
    const res = await get('/slow/stalls', {});
    expect(res.status).toBe(504);
    expect(res.json).toMatchObject({ code: 'GH_ERR_UPSTREAM_TIMEOUT' });
    expect(res.text).not.toContain('half-sent');
  });

  it('a 4XX answer is checked by the range\'s schema: a clean 404 passes, one that leaks a query is refused', async () => {
    const clean = await get('/users/notfound');
    expect(clean.status).toBe(404);
    expect(clean.json).toEqual({ error: 'no such user' });
    const leak = await get('/users/notfound-leak');
    expectRefused(leak, 'SELECT');
  });

  it('unlisted: refuse — a status with no schema (a stack trace on a 500) is refused; unlisted: pass lets it through', async () => {
    const refused = await get('/strict/boom', {});
    expectRefused(refused, 'Db.query');
    expect((await warning(refused))!.why).toContain('status 500 has no schema');
    const passed = await get('/users/boom');
    expect(passed.status).toBe(500);
    expect(passed.text).toBe('Error: at Db.query (/srv/app/db.js:10)');
  });

  it('without responseBody nothing is held or checked: the same leaking answer goes through', async () => {
    const res = await get('/plain/leak', {});
    expect(res.status).toBe(200);
    expect(res.json.ssn).toBe('123-45-6789');
    expect(res.forwarded[0]!.headers['accept-encoding']).toBeUndefined();
  });
});

describe('responseBody: answers that pass, as they came', () => {
  it('a valid answer: its bytes and headers unchanged', async () => {
    const res = await get('/users/1');
    expect(res.status).toBe(200);
    expect(res.text).toBe('{"id":1,"name":"Ann"}');
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['content-length']).toBe(String(res.text.length));
  });

  it('a chunked answer is held whole, checked, and sent with its length, byte for byte', async () => {
    const res = await get('/users/chunked');
    expect(res.status).toBe(200);
    expect(res.text).toBe('{"id": 7,  "name": "Chunk"}');
    expect(res.headers['content-length']).toBe(String(res.text.length));
    expect(res.headers['x-upstream']).toBe('kept');
    expect(res.headers['transfer-encoding']).toBeUndefined();
  });

  it('HEAD and 204 have no body to check', async () => {
    const head = await get('/users/1', { authorization: `Bearer ${token}` }, 'HEAD');
    expect(head.status).toBe(200);
    const gone = await get('/users/gone', { authorization: `Bearer ${token}` }, 'DELETE');
    expect(gone.status).toBe(204);
  });

  it('the token is still checked first: no token, 401, nothing forwarded', async () => {
    const res = await get('/users/1', {});
    expect(res.status).toBe(401);
    expect(res.forwarded).toEqual([]);
  });

  it('onInvalid: log — the answer goes through, and the warning says what would have been refused', async () => {
    const res = await get('/report/leak', {});
    expect(res.status).toBe(200);
    expect(res.json.ssn).toBe('123-45-6789');
    expect(await warning(res)).toMatchObject({ level: 'warn', status: 200, msg: "upstream answer does not match the route's responseBody; passed on (onInvalid: log)" });
    const big = await get('/report/bigchunks', {});
    expect(big.status).toBe(200);
    expect(big.text).toBe('{"id":1,"name":"' + 'B'.repeat(3000) + '"}');
    expect((await warning(big))!.why).toContain('over responseBody.maxSize');
    expect(await gw.gateway.metrics.scrape()).toMatch(/gatehouse_upstream_answers_invalid_total\{route="report",action="passed"\} 2/);
  });

  it('an OpenAPI 3.0 operation\'s response: readOnly allowed in an answer, nullable read, writeOnly refused, default for other statuses', async () => {
    const pet = await get('/pets/pet', {});
    expect(pet.status).toBe(200);
    expect(pet.json).toEqual({ id: 3, name: 'Rex', tag: null });
    expectRefused(await get('/pets/pet-secret', {}), 's3cr3t-value');
    expect((await get('/pets/pet-problem', {})).status).toBe(418);
    expectRefused(await get('/pets/pet-problem-bad', {}));
  });
});

describe('responseBody: the upstream connection after a refusal', () => {
  it('a client that leaves while an answer is held: nothing breaks, the next request is served', async () => {
    await new Promise<void>((resolve) => {
      const req = http.get(`${gw.url}/users/bigchunks`, { headers: { authorization: `Bearer ${token}` } });
      req.on('error', () => resolve());
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 3);
    });
    expect((await get('/users/1')).status).toBe(200);
  });
});

describe('responseBody over HTTP/2', () => {
  it('refuses and passes answers on an h2 stream the same way (chunked upstream answers included)', async () => {
    const pki = await createTestPki();
    const cert = await pki.server('gw', ['127.0.0.1', 'localhost']);
    const h2 = await startTestGateway(`
listen: { name: https, host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, reload: { watch: false } } }
upstreams: [ { name: api, url: ${api.url} } ]
routes:
  - { name: users, path: /users, upstream: api, public: true, responseBody: { schemas: { "200": ${JSON.stringify(USER_SCHEMA)} } } }
`);
    const session = await h2connect(h2.urls.https!, { ca: pki.ca.certPem, servername: 'localhost' });
    try {
      const leak = await h2request(session, { ':method': 'GET', ':path': '/users/leak' });
      expect(leak.status).toBe(502);
      expect(JSON.parse(leak.body).code).toBe('GH_ERR_UPSTREAM_RESPONSE_INVALID');
      expect(leak.body).not.toContain('123-45-6789');
      const chunked = await h2request(session, { ':method': 'GET', ':path': '/users/chunked' });
      expect(chunked.status).toBe(200);
      expect(chunked.body).toBe('{"id": 7,  "name": "Chunk"}');
      expect(chunked.headers['content-length']).toBe(String(chunked.body.length));
      const big = await h2request(session, { ':method': 'GET', ':path': '/users/bigchunks' });
      expect(big.status).toBe(200); // maxSize 1 MiB by default on this route
    } finally {
      session.close();
      await h2.close();
    }
  });
});
