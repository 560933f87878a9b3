import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkHeader, parseJws } from '../../src/authn/jwt.js';
import { importKeySet, verifyJws, type KeySet } from '../../src/authn/keys.js';
import { issuerConfig } from './jwt-fixtures.js';

/**
 * Project Wycheproof JWS/JWK vectors (../shared/wycheproof beside the repo, C2SP/wycheproof, Apache-2.0)
 * through gatehouse's JWS path: strict parsing, header rules, key policy, key selection,
 * signature. The payloads are not JWTs (e.g. "foo"), so claims are not checked here.
 *
 * Expected outcomes: every "invalid" vector is refused. Every "valid" vector with an
 * asymmetric algorithm is accepted, except where gatehouse's policy is stricter, listed below
 * with the reason. HMAC vectors are refused whatever their result: gatehouse never accepts HS*.
 */
// The vectors live in the workplace's shared/ folder beside the checkout (CI lays it there too);
// WYCHEPROOF_DIR points elsewhere. Missing vectors fail the run: they are part of the suite.
const DIR =
  process.env.WYCHEPROOF_DIR ??
  [path.resolve('..', 'shared', 'wycheproof'), '/work/shared/wycheproof'].find((dir) => existsSync(path.join(dir, 'json_web_signature_test.json'))) ??
  path.resolve('..', 'shared', 'wycheproof');

interface Vector {
  tcId: number;
  comment: string;
  jws: string;
  result: 'valid' | 'invalid' | 'acceptable';
  flags?: string[];
}
interface Group {
  comment: string;
  public?: Record<string, unknown> & { keys?: Record<string, unknown>[] };
  tests: Vector[];
}

/** Valid asymmetric vectors that gatehouse refuses on purpose, and why. */
const STRICTER: Record<string, string> = {
  // RFC 7520 Figure 27's key is published with alg "ES521", which is not a JWS algorithm: a key
  // whose declared alg is unknown is never used (the same key is invalid in json_web_key_test).
  'json_web_signature_test.json#347': 'key alg ES521 is not a JWS algorithm',
  'json_web_signature_test.json#351': 'key alg ES521 is not a JWS algorithm',
  // RFC 7520 Figure 20 is a PS384 signature checked with a key published with alg "PS256":
  // a key's declared alg must be the token's alg (algorithm-confusion protection).
  'json_web_signature_test.json#346': 'key alg PS256 does not fit a PS384 token',
  'json_web_signature_test.json#350': 'key alg PS256 does not fit a PS384 token',
};

const ALL = issuerConfig();

function load(file: string): Group[] {
  return (JSON.parse(readFileSync(`${DIR}/${file}`, 'utf8')) as { testGroups: Group[] }).testGroups;
}

/** gatehouse's JWS path; returns 'valid' or the refusal. */
function run(jws: string, keys: KeySet | null): string {
  const parsed = parseJws(jws, 64 * 1024);
  if (!parsed.ok) return parsed.error.code;
  const header = checkHeader(parsed.value.header, ALL);
  if (header) return header.code;
  if (!keys) return 'no-usable-key';
  const found = keys.select(parsed.value.header.kid as string | undefined, parsed.value.header.alg as string);
  if (!found.ok) return found.reason;
  const input = Buffer.from(jws.slice(0, parsed.value.signingInputEnd), 'latin1');
  return verifyJws(found.key, parsed.value.header.alg as string, input, parsed.value.signature) ? 'valid' : 'GH_ERR_JWT_SIGNATURE_INVALID';
}

function keySetOf(group: Group): KeySet | null {
  const pub = group.public;
  if (!pub) return null;
  const doc = Array.isArray(pub.keys) ? pub : { keys: [pub] };
  try {
    return importKeySet(doc, ALL.algorithms);
  } catch {
    return null;
  }
}

for (const file of ['json_web_signature_test.json', 'json_web_key_test.json']) {
  describe(`Wycheproof ${file}`, () => {
    const groups = load(file);
    const rows = groups.flatMap((g) => g.tests.map((t) => ({ g, t })));
    it.each(rows.map(({ g, t }) => [`${t.tcId} ${g.comment}: ${t.comment} (${t.result})`, g, t] as const))('%s', (_name, group, vector) => {
      const outcome = run(vector.jws, keySetOf(group));
      const alg = (() => {
        try {
          return JSON.parse(Buffer.from(vector.jws.split('.')[0]!, 'base64url').toString()).alg as string;
        } catch {
          return '';
        }
      })();
      const id = `${file}#${vector.tcId}`;
      if (vector.result === 'invalid') {
        expect(outcome).not.toBe('valid');
      } else if (alg.startsWith('HS') || group.public === undefined) {
        // HMAC: refused by the algorithm rule, or earlier by strict base64url parsing.
        expect(['GH_ERR_JWT_ALG_NOT_ALLOWED', 'GH_ERR_JWT_MALFORMED']).toContain(outcome);
      } else if (STRICTER[id]) {
        expect(outcome).not.toBe('valid');
      } else {
        expect(outcome).toBe('valid');
      }
    });
  });
}

describe('Wycheproof coverage', () => {
  it('runs every vector of both files', () => {
    const count = ['json_web_signature_test.json', 'json_web_key_test.json'].map((f) => load(f).reduce((n, g) => n + g.tests.length, 0));
    expect(count[0]).toBeGreaterThan(300);
    expect(count[1]).toBeGreaterThan(20);
  });
});
