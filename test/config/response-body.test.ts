import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { formatConfigIssue } from '../../src/errors.js';
import { fileIssues, issuesOf } from '../helpers/config.js';

/** `routes[].responseBody` at load (docs/configuration.md, "Answers"). */
const config = (responseBody: string, extra = '') => `listen: { port: 0 }
upstreams: [ { name: api, url: 'http://127.0.0.1:1' } ]
routes:
  - name: users
    path: /users
    upstream: api
    public: true
${extra}    responseBody: ${responseBody}
`;

describe('routes[].responseBody: what is refused at load', () => {
  it('a schema with an unknown keyword, named by its status (strict: a typo is never a rule skipped)', () => {
    const issues = issuesOf(config('{ schemas: { "200": { type: object, additonalProperties: false } } }'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 8, path: 'routes[0].responseBody.schemas.200' });
    expect(formatConfigIssue(issues[0]!)).toMatch(/^gatehouse\.yaml:8:\d+ routes\[0\]\.responseBody\.schemas\.200 is not a usable JSON Schema: strict mode: unknown keyword: "additonalProperties"$/);
  });

  it('statuses that are not a code, a range or default; no schemas at all', () => {
    for (const status of ['"20"', '"600"', '"1XX"', '"2xx"', 'ok', '"100"']) {
      const issues = issuesOf(config(`{ schemas: { ${status}: { type: object } } }`));
      expect(issues.length, status).toBeGreaterThan(0);
      expect(issues[0]!.path).toMatch(/^routes\[0\]\.responseBody\.schemas/);
    }
    expect(issuesOf(config('{ schemas: {} }'))[0]!.path).toBe('routes[0].responseBody.schemas');
    expect(issuesOf(config('{ maxSize: 1mb }'))[0]!.message).toMatch(/schemas/);
  });

  it('unknown keys and values out of range', () => {
    expect(issuesOf(config('{ schemas: { "200": {} }, onInvalid: drop }'))[0]!.path).toBe('routes[0].responseBody.onInvalid');
    expect(issuesOf(config('{ schemas: { "200": {} }, unlisted: allow }'))[0]!.path).toBe('routes[0].responseBody.unlisted');
    expect(issuesOf(config('{ schemas: { "200": {} }, maxDepth: 0 }'))[0]!.path).toBe('routes[0].responseBody.maxDepth');
    expect(issuesOf(config('{ schemas: { "200": {} }, maxSize: lots }'))[0]!.path).toBe('routes[0].responseBody.maxSize');
    expect(issuesOf(config('{ schemas: { "200": {} }, readOnly: refuse }'))[0]!.message).toMatch(/is not a known key \(expected one of: schemas, unlisted, maxSize, maxDepth, writeOnly, onInvalid\)/);
  });

  it('a header rule that sets Accept-Encoding or Range: gatehouse asks for whole, unencoded answers itself', () => {
    const issues = issuesOf(config('{ schemas: { "200": {} } }', '    headers: { request: { set: { Accept-Encoding: gzip } } }\n'));
    expect(issues.map((i) => i.path)).toEqual(['routes[0].responseBody']);
    expect(issues[0]!.message).toMatch(/headers\.request\.set names accept-encoding/);
  });

  it('a schema file that is missing, or a fragment with no schema: named with its path', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-answer-config-'));
    writeFileSync(path.join(dir, 'openapi.yaml'), 'openapi: 3.1.0\ninfo: { title: t, version: "1" }\npaths: {}\ncomponents: { schemas: { User: { type: object } } }\n');
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schemas: { "200": ./missing.json, "404": "./openapi.yaml#/components/schemas/Nobody" } }'));
    const issues = fileIssues(dir);
    expect(issues.map((i) => i.path)).toEqual(['routes[0].responseBody.schemas.200', 'routes[0].responseBody.schemas.404']);
    expect(issues[0]!.message).toContain(`${path.join(dir, 'missing.json')} does not exist`);
    expect(issues[1]!.message).toContain('has no schema at #/components/schemas/Nobody');
  });
});

describe('routes[].responseBody: what loads', () => {
  it('defaults: unlisted statuses pass, 1 MiB, 64 levels, writeOnly refused, invalid answers refused', () => {
    const loaded = loadConfigText(config('{ schemas: { "200": { type: object }, 4XX: { type: object }, default: { type: object } } }'), 'gatehouse.yaml', {});
    const body = loaded.routes[0]!.responseBody!;
    expect(Object.keys(body.schemas)).toEqual(['200', '4XX', 'default']);
    expect(body).toMatchObject({ unlisted: 'pass', maxSize: 1024 * 1024, maxDepth: 64, writeOnly: 'refuse', onInvalid: 'refuse' });
  });

  it('a fragment of an OpenAPI document relative to the config file, with its settings', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-answer-config-'));
    writeFileSync(
      path.join(dir, 'openapi.yaml'),
      'openapi: 3.0.3\ninfo: { title: t, version: "1" }\npaths: {}\ncomponents: { schemas: { User: { type: object, properties: { id: { type: integer, readOnly: true } } } } }\n',
    );
    writeFileSync(path.join(dir, 'gatehouse.yaml'), config('{ schemas: { "200": "./openapi.yaml#/components/schemas/User" }, maxSize: 64kb, unlisted: refuse, onInvalid: log, writeOnly: ignore, maxDepth: 8 }'));
    const loaded = loadConfigFile(path.join(dir, 'gatehouse.yaml'), {});
    const body = loaded.routes[0]!.responseBody!;
    expect(body.schemas['200']!.schemaFile).toBe(path.join(dir, 'openapi.yaml'));
    expect(body.schemas['200']!.document!.dialect).toBe('openapi-3.0');
    expect(body).toMatchObject({ unlisted: 'refuse', maxSize: 64 * 1024, maxDepth: 8, writeOnly: 'ignore', onInvalid: 'log' });
  });
});
