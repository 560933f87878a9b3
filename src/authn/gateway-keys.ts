import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { GatehouseConfig, GatewayTokenConfig } from '../config/types.js';

/**
 * One gateway signing key: the private half signs phantom-token JWTs, the public half is published.
 *
 * @example
 * ```ts
 * const { kid, alg, privateKey } = keys.signingKey();
 * ```
 */
export interface GatewayKey {
  readonly kid: string;
  readonly alg: GatewayTokenConfig['algorithm'];
  readonly privateKey: KeyObject;
  /** Public JWK with `kid`, `alg` and `use: sig`. */
  readonly publicJwk: JWK;
  /** ms since epoch. */
  readonly createdAt: number;
  /** ms since epoch when a newer key took over; published until `retiredAt + keyRotationGrace`. */
  readonly retiredAt: number | undefined;
}

/**
 * The keys gatehouse signs its own JWTs with (phantom tokens), and the JWKS it publishes.
 * Keys are configured (`gateway.signingKeys`: PEM or JWK files, the first signs) or generated
 * on first start and persisted in `gateway.keyDirectory` (files mode 0600). One instance is
 * shared by everything built from the same key source, see {@link acquireGatewayKeys}.
 *
 * @example
 * ```ts
 * const keys = acquireGatewayKeys(config);
 * await keys.ready();
 * const { kid, privateKey } = keys.signingKey();
 * res.end(keys.jwksJson(Date.now()));
 * keys.release();
 * ```
 */
export interface GatewayKeys {
  /** Loads (or generates and persists) the keys once; rejects when configured keys are unusable. */
  ready(): Promise<void>;
  /** True once {@link ready} has resolved. */
  readonly loaded: boolean;
  /** The key that signs now. Only after {@link ready}. */
  signingKey(): GatewayKey;
  /** Whether `kid` is one of this gateway's published keys (a JWT minted elsewhere is not reused). */
  publishes(kid: string, now: number): boolean;
  /** The published key set `{ keys: [...] }` as JSON text: the signing key and retired keys in their grace period. */
  jwksJson(now: number): string;
  /**
   * Generated keys only: make a new signing key; the previous one stays published for
   * `keyRotationGrace`. Persisted, so other processes sharing the directory pick it up on start.
   */
  rotate(): Promise<GatewayKey>;
  /** Drop this holder's reference; the last one frees the keys. */
  release(): void;
}

/**
 * Where generated keys live when `gateway.keyDirectory` is not set (relative to the config file).
 *
 * @example
 * ```ts
 * path.resolve(config.baseDir, config.gateway.keyDirectory ?? DEFAULT_KEY_DIRECTORY);
 * ```
 */
export const DEFAULT_KEY_DIRECTORY = '.gatehouse/keys';

const shared = new Map<string, { keys: GatewayKeys; refs: number }>();

/**
 * Get the gateway keys for a config: the same instance for every caller whose config names the
 * same key source (so the phantom area publishes exactly the keys the authenticators sign
 * with). Each call must be paired with `release()`.
 *
 * @example
 * ```ts
 * const keys = acquireGatewayKeys(config);
 * try { await keys.ready(); } finally { keys.release(); }
 * ```
 */
export function acquireGatewayKeys(config: Pick<GatehouseConfig, 'gateway' | 'baseDir'>, now: () => number = Date.now): GatewayKeys {
  const g = config.gateway;
  const directory = path.resolve(config.baseDir, g.keyDirectory ?? DEFAULT_KEY_DIRECTORY);
  const id = JSON.stringify([
    g.signingKeys.length > 0 ? g.signingKeys.map((f) => path.resolve(config.baseDir, f)) : directory,
    g.algorithm,
    g.keyRotationGrace,
  ]);
  const existing = shared.get(id);
  if (existing) {
    existing.refs++;
    return existing.keys;
  }
  const inner = createKeyStore(config.baseDir, g, directory, now);
  const slot = { refs: 1, keys: undefined as unknown as GatewayKeys };
  slot.keys = {
    ready: inner.ready,
    get loaded() {
      return inner.loaded;
    },
    signingKey: inner.signingKey,
    publishes: inner.publishes,
    jwksJson: inner.jwksJson,
    rotate: inner.rotate,
    release() {
      slot.refs--;
      if (slot.refs <= 0 && shared.get(id) === slot) shared.delete(id);
    },
  };
  shared.set(id, slot);
  return slot.keys;
}

interface StoredKey {
  kid: string;
  alg: GatewayTokenConfig['algorithm'];
  createdAt: number;
  retiredAt?: number;
  jwk: JWK;
}

function createKeyStore(baseDir: string, g: GatewayTokenConfig, directory: string, now: () => number) {
  let keys: GatewayKey[] = [];
  let loading: Promise<void> | null = null;
  let loaded = false;
  let cachedJson: string | null = null;
  /** When the next retired key leaves the published set (recompute the JWKS then). */
  let nextChange = Infinity;
  const generated = g.signingKeys.length === 0;

  function published(at: number): GatewayKey[] {
    return keys.filter((k) => k.retiredAt === undefined || k.retiredAt + g.keyRotationGrace > at);
  }

  function invalidate(): void {
    cachedJson = null;
  }

  async function load(): Promise<void> {
    if (generated) {
      await mkdir(directory, { recursive: true, mode: 0o700 });
      keys = await readDirectory(directory, g, now());
      if (!keys.some((k) => k.retiredAt === undefined && k.alg === g.algorithm)) {
        await withLock(directory, async () => {
          // Another process may have generated one while we waited for the lock.
          keys = await readDirectory(directory, g, now());
          if (!keys.some((k) => k.retiredAt === undefined && k.alg === g.algorithm)) await addGenerated();
        });
      }
    } else {
      keys = await Promise.all(g.signingKeys.map((file, i) => readConfiguredKey(path.resolve(baseDir, file), i === 0 ? g.algorithm : undefined)));
    }
    invalidate();
    loaded = true;
  }

  /** Generate a key, retire the current ones, persist both. Caller holds the lock. */
  async function addGenerated(): Promise<GatewayKey> {
    const at = now();
    const key = await generateKey(g.algorithm, at);
    await writeStored(directory, toStored(key));
    const retired: GatewayKey[] = [];
    for (const k of keys) {
      if (k.retiredAt !== undefined) {
        retired.push(k);
        continue;
      }
      const r = { ...k, retiredAt: at };
      await writeStored(directory, toStored(r));
      retired.push(r);
    }
    keys = [key, ...retired];
    invalidate();
    return key;
  }

  function ready(): Promise<void> {
    if (!loading) {
      loading = load().catch((err) => {
        loading = null;
        throw err;
      });
    }
    return loading;
  }

  return {
    get loaded() {
      return loaded;
    },
    ready,
    signingKey(): GatewayKey {
      const key = keys.find((k) => k.retiredAt === undefined && k.alg === g.algorithm) ?? keys[0];
      if (!key) throw new Error('gateway signing keys are not loaded');
      return key;
    },
    publishes(kid: string, at: number): boolean {
      for (const k of keys) if (k.kid === kid) return k.retiredAt === undefined || k.retiredAt + g.keyRotationGrace > at;
      return false;
    },
    jwksJson(at: number): string {
      if (cachedJson === null || at >= nextChange) {
        const list = published(at);
        nextChange = Math.min(Infinity, ...list.filter((k) => k.retiredAt !== undefined).map((k) => k.retiredAt! + g.keyRotationGrace));
        cachedJson = JSON.stringify({ keys: list.map((k) => k.publicJwk) });
      }
      return cachedJson;
    },
    async rotate(): Promise<GatewayKey> {
      if (!generated) throw new Error('gateway.signingKeys are configured: rotate by listing a new key first and keeping the old one after it');
      await ready();
      let key: GatewayKey | undefined;
      await withLock(directory, async () => {
        keys = await readDirectory(directory, g, now());
        key = await addGenerated();
      });
      return key!;
    },
  };
}

async function generateKey(alg: GatewayTokenConfig['algorithm'], createdAt: number): Promise<GatewayKey> {
  const { privateKey } =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'ES384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : alg === 'EdDSA'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return describe(privateKey, alg, createdAt, undefined, undefined);
}

async function describe(
  privateKey: KeyObject,
  alg: GatewayTokenConfig['algorithm'],
  createdAt: number,
  retiredAt: number | undefined,
  kid: string | undefined,
): Promise<GatewayKey> {
  const pub = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  const id = kid ?? (await calculateJwkThumbprint(pub, 'sha256'));
  return { kid: id, alg, privateKey, publicJwk: { ...pub, kid: id, alg, use: 'sig' }, createdAt, retiredAt };
}

function toStored(key: GatewayKey): StoredKey {
  const stored: StoredKey = { kid: key.kid, alg: key.alg, createdAt: key.createdAt, jwk: key.privateKey.export({ format: 'jwk' }) as JWK };
  if (key.retiredAt !== undefined) stored.retiredAt = key.retiredAt;
  return stored;
}

/** Atomic write with mode 0600: a temp file in the same directory, then rename. */
async function writeStored(directory: string, stored: StoredKey): Promise<void> {
  const file = path.join(directory, `${stored.kid}.json`);
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

/** Read the persisted keys; delete those whose grace period is over. */
async function readDirectory(directory: string, g: GatewayTokenConfig, at: number): Promise<GatewayKey[]> {
  const out: GatewayKey[] = [];
  for (const name of await readdir(directory)) {
    if (!name.endsWith('.json')) continue;
    const file = path.join(directory, name);
    let stored: StoredKey;
    try {
      stored = JSON.parse(await readFile(file, 'utf8')) as StoredKey;
    } catch (err) {
      throw new Error(`gateway key file ${file} cannot be read: ${(err as Error).message}`);
    }
    if (stored.retiredAt !== undefined && stored.retiredAt + g.keyRotationGrace <= at) {
      await rm(file, { force: true });
      continue;
    }
    const privateKey = createPrivateKey({ key: stored.jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    out.push(await describe(privateKey, stored.alg, stored.createdAt, stored.retiredAt, stored.kid));
  }
  // Newest first: the first unretired key signs.
  return out.sort((a, b) => b.createdAt - a.createdAt);
}

/** A configured key file: PEM (PKCS#8, SEC1 or PKCS#1) or a private JWK. */
async function readConfiguredKey(file: string, requiredAlg: GatewayTokenConfig['algorithm'] | undefined): Promise<GatewayKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`gateway.signingKeys: ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let privateKey: KeyObject;
  let jwk: JWK | undefined;
  try {
    if (text.trimStart().startsWith('{')) {
      jwk = JSON.parse(text) as JWK;
      privateKey = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } else {
      privateKey = createPrivateKey(text);
    }
  } catch (err) {
    throw new Error(`gateway.signingKeys: ${file} is not a private key in PEM or JWK form (${(err as Error).message})`);
  }
  const fits = algorithmsFor(privateKey);
  const alg = requiredAlg ?? (jwk?.alg && fits.includes(jwk.alg as GatewayTokenConfig['algorithm']) ? (jwk.alg as GatewayTokenConfig['algorithm']) : fits[0]);
  if (!alg || !fits.includes(alg)) {
    throw new Error(`gateway.signingKeys: ${file} is a ${describeKey(privateKey)} key, which cannot sign ${requiredAlg ?? 'with any supported algorithm'}`);
  }
  if (privateKey.asymmetricKeyType === 'rsa' && (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new Error(`gateway.signingKeys: ${file} is an RSA key under 2048 bits`);
  }
  const info = await stat(file);
  return describe(privateKey, alg, info.mtimeMs, undefined, jwk?.kid);
}

function algorithmsFor(key: KeyObject): GatewayTokenConfig['algorithm'][] {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return key.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? ['ES256'] : key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? ['ES384'] : [];
    case 'ed25519':
      return ['EdDSA'];
    case 'rsa':
      return ['RS256', 'PS256'];
    default:
      return [];
  }
}

function describeKey(key: KeyObject): string {
  return [key.asymmetricKeyType, key.asymmetricKeyDetails?.namedCurve].filter(Boolean).join(' ');
}

/**
 * A cross-process lock (several workers, or gateways sharing a directory): an exclusive lock
 * file; a lock older than 10 s is taken to be stale (a crashed holder).
 */
async function withLock(directory: string, fn: () => Promise<void>): Promise<void> {
  const lock = path.join(directory, '.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(lock, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const info = await stat(lock).catch(() => null);
      if (info && Date.now() - info.mtimeMs > 10_000) await rm(lock, { force: true });
      if (attempt > 400) throw new Error(`gateway keys: ${lock} is held by another process`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  try {
    await fn();
  } finally {
    await rm(lock, { force: true });
  }
}
