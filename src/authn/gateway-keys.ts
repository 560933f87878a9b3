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
  /**
   * ms since epoch from which the key signs. A rotated-in key is published first and signs only
   * later, so every instance and every upstream cache knows it before the first JWT it signs.
   */
  readonly activatesAt: number;
  /** ms since epoch when a newer key took over; published until `retiredAt + keyRotationGrace`. */
  readonly retiredAt: number | undefined;
}

/**
 * The keys gatehouse signs its own JWTs with (phantom tokens), and the JWKS it publishes.
 * Keys are configured (`gateway.signingKeys`: PEM or JWK files, the first signs) or generated
 * on first start and persisted in `gateway.keyDirectory` (files mode 0600). One instance is
 * shared by everything built from the same config, see {@link acquireGatewayKeys}.
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
  /**
   * The published key set `{ keys: [...] }` as JSON text: the signing key, a rotated-in key not
   * signing yet, and retired keys in their grace period.
   */
  jwksJson(now: number): string;
  /**
   * Generated keys only: make a new signing key, signing from `activateAfter` ms on (published at
   * once); the previous one stays published for `keyRotationGrace` after that. Persisted, so
   * other processes sharing the directory pick it up on their next {@link refresh}.
   */
  rotate(options?: { activateAfter?: number }): Promise<GatewayKey>;
  /**
   * Generated keys only: re-read the key directory (keys rotated by another process), and rotate
   * when the newest key is older than `interval` ms (at most one process does, under a lock).
   * Resolves to the new key, or null.
   */
  refresh(options?: { interval?: number; activateAfter?: number }): Promise<GatewayKey | null>;
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

/** What the keys are read from: the token settings of `gateway` and the config's directory. */
type KeysConfig = Pick<GatehouseConfig, 'baseDir'> & { readonly gateway: GatewayTokenConfig };

/** Per config object (one plan), per key source. A reload (a new config object) reads the keys anew. */
const shared = new WeakMap<KeysConfig, Map<string, { keys: GatewayKeys; refs: number }>>();

/**
 * Get the gateway keys for a config: the same instance for every caller holding the same config
 * object (so the phantom area publishes exactly the keys the authenticators of that plan sign
 * with). A reloaded config gets a fresh instance that reads the keys again. Each call must be
 * paired with `release()`.
 *
 * @example
 * ```ts
 * const keys = acquireGatewayKeys(config);
 * try { await keys.ready(); } finally { keys.release(); }
 * ```
 */
export function acquireGatewayKeys(config: KeysConfig, now: () => number = Date.now): GatewayKeys {
  const g = config.gateway;
  const directory = path.resolve(config.baseDir, g.keyDirectory ?? DEFAULT_KEY_DIRECTORY);
  const id = JSON.stringify([
    g.signingKeys.length > 0 ? g.signingKeys.map((f) => path.resolve(config.baseDir, f)) : directory,
    g.algorithm,
    g.keyRotationGrace,
  ]);
  let byId = shared.get(config);
  if (!byId) {
    byId = new Map();
    shared.set(config, byId);
  }
  const existing = byId.get(id);
  if (existing) {
    existing.refs++;
    return existing.keys;
  }
  const inner = createKeyStore(config.baseDir, g, directory, now);
  const slot = { refs: 1, keys: undefined as unknown as GatewayKeys };
  const registry = byId;
  slot.keys = {
    ready: inner.ready,
    get loaded() {
      return inner.loaded;
    },
    signingKey: inner.signingKey,
    publishes: inner.publishes,
    jwksJson: inner.jwksJson,
    rotate: inner.rotate,
    refresh: inner.refresh,
    release() {
      slot.refs--;
      if (slot.refs <= 0 && registry.get(id) === slot) registry.delete(id);
    },
  };
  byId.set(id, slot);
  return slot.keys;
}

interface StoredKey {
  kid: string;
  alg: GatewayTokenConfig['algorithm'];
  createdAt: number;
  activatesAt?: number;
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

  function isPublished(k: GatewayKey, at: number): boolean {
    return k.retiredAt === undefined || k.retiredAt + g.keyRotationGrace > at;
  }

  /** A key of the configured algorithm that may sign at `at` (activated, not retired). */
  function signs(k: GatewayKey, at: number): boolean {
    return k.alg === g.algorithm && k.activatesAt <= at && (k.retiredAt === undefined || k.retiredAt > at);
  }

  function install(list: GatewayKey[]): void {
    keys = list;
    cachedJson = null;
  }

  async function load(): Promise<void> {
    if (generated) {
      await mkdir(directory, { recursive: true, mode: 0o700 });
      install(await readDirectory(directory, g, now()));
      if (!keys.some((k) => signs(k, now()))) {
        await withLock(directory, async () => {
          // Another process may have generated one while we waited for the lock.
          install(await readDirectory(directory, g, now()));
          if (!keys.some((k) => signs(k, now()))) await addGenerated(0);
        });
      }
    } else {
      install(await Promise.all(g.signingKeys.map((file, i) => readConfiguredKey(path.resolve(baseDir, file), i === 0 ? g.algorithm : undefined))));
    }
    loaded = true;
  }

  /** Generate a key signing from now + `activateAfter`; the current ones retire then. Caller holds the lock. */
  async function addGenerated(activateAfter: number): Promise<GatewayKey> {
    const at = now();
    const activatesAt = at + activateAfter;
    const key = await generateKey(g.algorithm, at, activatesAt);
    await writeStored(directory, toStored(key));
    const others: GatewayKey[] = [];
    for (const k of keys) {
      if (k.retiredAt !== undefined && k.retiredAt <= activatesAt) {
        others.push(k);
        continue;
      }
      const r: GatewayKey = { ...k, retiredAt: activatesAt };
      await writeStored(directory, toStored(r));
      others.push(r);
    }
    install([key, ...others]);
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

  function requireGenerated(): void {
    if (!generated) throw new Error('gateway.signingKeys are configured: rotate by listing a new key first and keeping the old one after it');
  }

  return {
    get loaded() {
      return loaded;
    },
    ready,
    signingKey(): GatewayKey {
      const at = now();
      let best: GatewayKey | undefined;
      for (const k of keys) if (signs(k, at) && (best === undefined || k.activatesAt > best.activatesAt)) best = k;
      const key = best ?? keys[0];
      if (!key) throw new Error('gateway signing keys are not loaded');
      return key;
    },
    publishes(kid: string, at: number): boolean {
      for (const k of keys) if (k.kid === kid) return isPublished(k, at);
      return false;
    },
    jwksJson(at: number): string {
      if (cachedJson === null || at >= nextChange) {
        const list = keys.filter((k) => isPublished(k, at));
        nextChange = Math.min(Infinity, ...list.filter((k) => k.retiredAt !== undefined).map((k) => k.retiredAt! + g.keyRotationGrace));
        cachedJson = JSON.stringify({ keys: list.map((k) => k.publicJwk) });
      }
      return cachedJson;
    },
    async rotate(options: { activateAfter?: number } = {}): Promise<GatewayKey> {
      requireGenerated();
      await ready();
      let key: GatewayKey | undefined;
      await withLock(directory, async () => {
        install(await readDirectory(directory, g, now()));
        key = await addGenerated(options.activateAfter ?? 0);
      });
      return key!;
    },
    async refresh(options: { interval?: number; activateAfter?: number } = {}): Promise<GatewayKey | null> {
      requireGenerated();
      await ready();
      install(await readDirectory(directory, g, now()));
      const interval = options.interval;
      if (interval === undefined || interval <= 0) return null;
      const due = () => {
        let newest = -Infinity;
        for (const k of keys) if (k.alg === g.algorithm && k.createdAt > newest) newest = k.createdAt;
        return newest + interval <= now();
      };
      if (!due()) return null;
      let key: GatewayKey | null = null;
      await withLock(directory, async () => {
        // Another process may have rotated while we waited for the lock.
        install(await readDirectory(directory, g, now()));
        if (due()) key = await addGenerated(options.activateAfter ?? 0);
      });
      return key;
    },
  };
}

async function generateKey(alg: GatewayTokenConfig['algorithm'], createdAt: number, activatesAt: number): Promise<GatewayKey> {
  const { privateKey } =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'ES384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : alg === 'EdDSA'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return describe(privateKey, alg, createdAt, activatesAt, undefined, undefined);
}

async function describe(
  privateKey: KeyObject,
  alg: GatewayTokenConfig['algorithm'],
  createdAt: number,
  activatesAt: number,
  retiredAt: number | undefined,
  kid: string | undefined,
): Promise<GatewayKey> {
  const pub = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  const id = kid ?? (await calculateJwkThumbprint(pub, 'sha256'));
  return { kid: id, alg, privateKey, publicJwk: { ...pub, kid: id, alg, use: 'sig' }, createdAt, activatesAt, retiredAt };
}

function toStored(key: GatewayKey): StoredKey {
  const stored: StoredKey = { kid: key.kid, alg: key.alg, createdAt: key.createdAt, jwk: key.privateKey.export({ format: 'jwk' }) as JWK };
  if (key.activatesAt !== key.createdAt) stored.activatesAt = key.activatesAt;
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
    out.push(await describe(privateKey, stored.alg, stored.createdAt, stored.activatesAt ?? stored.createdAt, stored.retiredAt, stored.kid));
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
  return describe(privateKey, alg, info.mtimeMs, 0, undefined, jwk?.kid);
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
