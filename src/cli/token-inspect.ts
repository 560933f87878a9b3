import { pino } from 'pino';
import { loadConfigFile } from '../config/load.js';
import type { GatehouseConfig, IssuerConfig } from '../config/types.js';
import { ConfigError, formatConfigIssue, type GatehouseError } from '../errors.js';
import { createFetcher } from '../authn/fetch.js';
import { createJwksSource } from '../authn/jwks.js';
import { CLAIM_CHECKS, checkHeader, MAX_TOKEN_SIZE_CEILING, parseJwt, scopesOf } from '../authn/jwt.js';
import { verifyJws } from '../authn/keys.js';
import { createMetrics } from '../telemetry/metrics.js';
import type { GatewayServices } from '../pipeline/runtime.js';

/** Exit codes of `gatehouse token inspect`. */
export const INSPECT_EXIT = { valid: 0, invalid: 1, undecided: 2, config: 3 } as const;

/**
 * `gatehouse token inspect --config FILE <token>`: explain, check by check, whether the
 * gateway would accept a JWT access token, and which check fails. Fetches the issuer's keys
 * (as the gateway would) but never calls an upstream. The token itself is never printed.
 * Exit code: 0 valid, 1 invalid, 2 undecided (keys unreachable, opaque issuer), 3 config error.
 * A token of `-` is read from stdin (keeps it out of shell history).
 *
 * @example
 * ```ts
 * const code = await runTokenInspect('gatehouse.yaml', token, process.stdout);
 * ```
 */
export async function runTokenInspect(
  configFile: string,
  token: string,
  out: NodeJS.WritableStream,
  options: { now?: () => number; stdin?: NodeJS.ReadableStream } = {},
): Promise<number> {
  const now = options.now ?? Date.now;
  const write = (line = '') => void out.write(`${line}\n`);
  const ok = (name: string, detail: string) => write(`  ok    ${name}: ${detail}`);
  const fail = (name: string, error: GatehouseError) =>
    write(`  FAIL  ${name}: ${error.detail ?? error.description} (${error.code}, HTTP ${error.status}${error.oauthError ? ` ${error.oauthError}` : ''})`);
  let config: GatehouseConfig;
  try {
    config = loadConfigFile(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const issue of err.issues) write(formatConfigIssue(issue));
      return INSPECT_EXIT.config;
    }
    throw err;
  }
  // `-` reads the token from stdin, so it stays out of shell history and `ps`.
  if (token === '-') token = await readAll(options.stdin ?? process.stdin);
  token = token.trim();
  if (/^bearer\s/i.test(token)) token = token.replace(/^bearer\s+/i, '');

  write(`token: ${token.length} characters`);
  const parsed = parseJwt(token, MAX_TOKEN_SIZE_CEILING);
  if (!parsed.ok) {
    fail('structure', parsed.error);
    write('result: INVALID (the token is not a well-formed JWT; an issuer with introspection would be asked about it)');
    return INSPECT_EXIT.invalid;
  }
  ok('structure', 'three base64url parts, header and payload are JSON objects');
  const { header, claims } = parsed.value;
  write(`header: ${JSON.stringify(header)}`);
  write(`claims: ${JSON.stringify(claims, null, 2).replace(/\n/g, '\n  ')}`);

  const iss = claims.iss;
  const issuer = config.issuers.find((i) => i.issuer === iss);
  if (!issuer) {
    write(`  FAIL  issuer: iss ${JSON.stringify(iss)} is not a configured issuer (GH_ERR_JWT_ISSUER_UNKNOWN, HTTP 401 invalid_token)`);
    write(`        configured: ${config.issuers.map((i) => `${i.name} = ${i.issuer}`).join(', ') || 'none'}`);
    write('result: INVALID');
    return INSPECT_EXIT.invalid;
  }
  if (issuer.introspection) {
    write(`  --    issuer: ${issuer.name} is an opaque-token issuer: its tokens are always introspected, which inspect does not do`);
    write('result: UNDECIDED');
    return INSPECT_EXIT.undecided;
  }
  ok('issuer', `iss matches issuer "${issuer.name}"`);

  let failed = false;
  const limit = Math.min(issuer.maxTokenSize, MAX_TOKEN_SIZE_CEILING);
  if (token.length > limit) {
    write(`  FAIL  size: ${token.length} bytes, limit ${limit} (GH_ERR_JWT_TOO_LARGE, HTTP 401 invalid_token)`);
    failed = true;
  } else ok('size', `${token.length} bytes, limit ${limit}`);

  const headerDenial = checkHeader(header, issuer);
  if (headerDenial) {
    fail('header', headerDenial);
    failed = true;
  } else ok('header', `alg ${String(header.alg)} is allowed (${issuer.algorithms.join(', ')}); no jku/x5u/jwk/x5c; no crit; typ ${header.typ === undefined ? 'absent' : JSON.stringify(header.typ)} is accepted`);

  const verdict = await checkSignature(config, issuer, token, parsed.value.signingInputEnd, parsed.value.signature, header, now, write, ok);
  if (verdict === 'fail') failed = true;

  const t = now();
  for (const check of CLAIM_CHECKS) {
    const denial = check.run(claims, issuer, t);
    if (denial) {
      fail(`claim ${check.name}`, denial);
      failed = true;
    } else ok(`claim ${check.name}`, describeClaim(check.name, claims, issuer, t));
  }

  write('routes:');
  const scopes = scopesOf(claims);
  for (const route of config.routes) {
    if (route.public) {
      write(`  ${route.name} (${route.path}): public, no token needed`);
      continue;
    }
    if (route.issuers && !route.issuers.includes(issuer.name)) {
      write(`  ${route.name} (${route.path}): does not accept issuer ${issuer.name} (GH_ERR_JWT_ISSUER_NOT_ACCEPTED)`);
      continue;
    }
    const missing = route.scopes.filter((s) => !scopes.has(s));
    const extras = [route.claims.length > 0 ? `${route.claims.length} claim rule(s) checked per request` : '', route.stepUp ? 'step-up rules apply' : '']
      .filter(Boolean)
      .join('; ');
    write(
      `  ${route.name} (${route.path}): ${missing.length > 0 ? `missing scope ${missing.join(' ')} (GH_ERR_AUTHZ_INSUFFICIENT_SCOPE, HTTP 403)` : 'scopes ok'}${extras ? `; ${extras}` : ''}`,
    );
  }
  if (failed) {
    write('result: INVALID');
    return INSPECT_EXIT.invalid;
  }
  if (verdict === 'undecided') {
    write('result: UNDECIDED (the key set could not be fetched, so the signature is unchecked)');
    return INSPECT_EXIT.undecided;
  }
  write('result: VALID');
  return INSPECT_EXIT.valid;
}

async function checkSignature(
  config: GatehouseConfig,
  issuer: IssuerConfig,
  token: string,
  signingInputEnd: number,
  signature: Buffer,
  header: Readonly<Record<string, unknown>>,
  now: () => number,
  write: (line?: string) => void,
  ok: (name: string, detail: string) => void,
): Promise<'ok' | 'fail' | 'undecided'> {
  const services: GatewayServices = { log: pino({ level: 'silent' }), metrics: createMetrics(), now };
  const fetcher = createFetcher(issuer.tls, config.baseDir);
  const source = createJwksSource({ issuer, services, fetcher });
  try {
    await source.refresh();
    const set = source.current();
    const where = issuer.jwksUri ?? `discovery of ${issuer.issuer}`;
    if (!set) {
      const details = source.readiness().details ?? {};
      write(`  FAIL  keys: no key set from ${where}: ${String(details.lastError ?? 'unknown error')} (GH_ERR_AUTH_KEYS_UNAVAILABLE, HTTP 503)`);
      return 'undecided';
    }
    ok('keys', `${set.keys.length} usable key(s) from ${where}`);
    for (const r of set.rejected) write(`        not used: key ${r.kid ?? '(no kid)'}: ${r.reason}`);
    const alg = typeof header.alg === 'string' ? header.alg : '';
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const found = set.select(kid, alg);
    if (!found.ok) {
      write(`  FAIL  key: ${found.detail} (${found.reason === 'unknown-kid' ? 'GH_ERR_JWT_KID_UNKNOWN' : 'GH_ERR_JWT_KEY_UNUSABLE'}, HTTP 401 invalid_token)`);
      return 'fail';
    }
    ok('key', `kid ${found.key.kid ?? '(none)'}: ${found.key.kty}${found.key.crv ? ` ${found.key.crv}` : ''}${found.key.bits ? ` ${found.key.bits} bits` : ''}, fits ${alg}`);
    if (!verifyJws(found.key, alg, Buffer.from(token.slice(0, signingInputEnd), 'latin1'), signature)) {
      write(`  FAIL  signature: ${alg} signature does not verify (GH_ERR_JWT_SIGNATURE_INVALID, HTTP 401 invalid_token)`);
      return 'fail';
    }
    ok('signature', `${alg} signature verifies`);
    return 'ok';
  } finally {
    await source.close();
    await fetcher.close();
  }
}

function describeClaim(name: string, claims: Readonly<Record<string, unknown>>, issuer: IssuerConfig, now: number): string {
  const at = (s: unknown) => (typeof s === 'number' ? `${new Date(s * 1000).toISOString()} (${Math.round(s - now / 1000)}s from now)` : 'absent');
  switch (name) {
    case 'iss':
      return `${JSON.stringify(claims.iss)}`;
    case 'exp':
      return `expires ${at(claims.exp)}; clock skew ${issuer.clockSkew / 1000}s`;
    case 'nbf':
      return `not before ${at(claims.nbf)}`;
    case 'iat':
      return `issued ${at(claims.iat)}${issuer.maxTokenAge !== undefined ? `; maxTokenAge ${issuer.maxTokenAge / 1000}s` : ''}`;
    case 'aud':
      return `${JSON.stringify(claims.aud)} contains one of ${JSON.stringify(issuer.audiences)}`;
    case 'types':
      return 'sub, scope/scp and client_id have the right JSON types';
    case 'cnf': {
      const cnf = claims.cnf as Record<string, unknown> | undefined;
      const bound = cnf?.['x5t#S256'];
      const jkt = cnf?.jkt;
      const parts: string[] = [];
      if (typeof bound === 'string') parts.push(`bound to a client certificate (x5t#S256 ${bound}): accepted only over mutual TLS with that certificate, checked on every request`);
      if (typeof jkt === 'string') parts.push(`bound to a DPoP key (jkt ${jkt}): accepted only as "Authorization: DPoP" with a DPoP proof signed by that key, for that request, on every request`);
      return parts.length > 0 ? parts.join('; ') : 'absent (a bearer token)';
    }
    case 'requiredClaims':
      return issuer.requiredClaims.length > 0 ? `present: ${issuer.requiredClaims.join(', ')}` : 'none configured';
    default:
      return 'passes';
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) {
    text += String(chunk);
    if (text.length > MAX_TOKEN_SIZE_CEILING * 2) break;
  }
  return text;
}
