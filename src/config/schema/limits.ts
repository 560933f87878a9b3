import { closed, duration, name, nonEmptyString, type JsonSchema } from './common.js';

/** See docs/rate-limits.md for the exact semantics of every key here. */

const key: JsonSchema = {
  ...nonEmptyString,
  description: 'What one budget is counted per: claim:NAME, ip, header:NAME, route, or several joined with "+" (claim:sub+route).',
};
const store: JsonSchema = {
  enum: ['memory', 'redis'],
  description: 'memory (per process) or redis (shared by every instance). Default: redis when a redis section exists.',
};
const onStoreError: JsonSchema = {
  enum: ['failOpen', 'failClosed'],
  description: 'When Redis cannot answer in time: failOpen admits (logged, counted), failClosed answers 503. Default: redis.onError.',
};

/** `rateLimits[]` (issue: unrestricted resource consumption): GCRA, `limit` per `window`, bursts of `burst`. */
export const rateLimit: JsonSchema = closed(
  {
    name,
    key,
    limit: { type: 'integer', minimum: 1, description: 'Requests per window at the steady rate.' },
    window: duration,
    burst: { type: 'integer', minimum: 1, description: 'Requests that may arrive back to back (default: limit).' },
    store,
    onStoreError,
  },
  ['name', 'key', 'limit', 'window'],
);

/** `quotas[]`: calendar quotas per key (UTC day or month). */
export const quota: JsonSchema = closed(
  {
    name,
    key,
    limit: { type: 'integer', minimum: 1, description: 'Admitted requests per period.' },
    period: { enum: ['day', 'month'], description: 'A calendar day or month in UTC.' },
    store,
    onStoreError,
  },
  ['name', 'key', 'limit', 'period'],
);

/** `redis`: shared state for several gateway instances. */
export const redis: JsonSchema = closed(
  {
    url: { type: 'string', pattern: '^rediss?://', description: 'redis://[user:password@]host:port[/db], or rediss:// for TLS.' },
    keyPrefix: { ...nonEmptyString, description: 'Prefix of every key gatehouse writes (default "gatehouse:").' },
    timeout: { ...duration, description: 'Command timeout (default 250ms); a slower answer counts as a store error.' },
    onError: { ...onStoreError, description: 'Default onStoreError of every policy (default failClosed).' },
    cluster: { type: 'boolean', description: 'url names one node of a Redis Cluster; the others are discovered (default false).' },
  },
  ['url'],
);

/** `preAuthLimit`: per-client-IP limit that runs before any token cryptography. */
export const preAuthLimit: JsonSchema = closed(
  {
    limit: { type: 'integer', minimum: 1, description: 'Requests per window per client IP (IPv6: per /64), on every route.' },
    window: duration,
    burst: { type: 'integer', minimum: 1, description: 'Requests that may arrive back to back (default: limit).' },
    store: { enum: ['memory', 'redis'], description: 'Default memory: the guard protects the CPU of each instance.' },
    onStoreError,
  },
  ['limit', 'window'],
);

/** `authFailureLimit`: failed authentications per client IP, then a block before any token is read. */
export const authFailureLimit: JsonSchema = closed(
  {
    limit: { type: 'integer', minimum: 1, description: 'Failed authentications (an invalid, expired or forged token, a bad DPoP proof, a bad cookie) per client IP (IPv6: per /64) within window that block it.' },
    window: duration,
    blockFor: { ...duration, description: 'How long a blocked address has its requests to routes that need a token refused (429) before their token is read.' },
    store: { enum: ['memory', 'redis'], description: 'memory (default): per process; redis: shared by every worker and gateway.' },
    onStoreError: { ...onStoreError, description: 'With Redis unreachable: failOpen (default: tokens are still checked) or failClosed (503).' },
  },
  ['limit', 'window', 'blockFor'],
);

/** `memoryStore`: bounds of the in-memory store. */
export const memoryStore: JsonSchema = closed({
  maxKeys: { type: 'integer', minimum: 1, description: 'Keys kept per policy (LRU eviction beyond); default 100000.' },
});
