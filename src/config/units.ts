const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type DurationUnit = keyof typeof DURATION_UNITS;
const DAY = DURATION_UNITS.d;

/**
 * Parse a duration into milliseconds: a number is seconds; strings take ms, s, m, h, d.
 * The form only: what each key accepts is {@link DURATION_RANGES}, checked by {@link checkDurations}.
 *
 * @example
 * ```ts
 * parseDuration('5m'); // 300000
 * parseDuration(30);   // 30000
 * ```
 */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return Math.round(value * 1000);
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$/.exec(value);
  if (!match) throw new TypeError(`not a duration: ${value}`);
  const n = Number(match[1]);
  return Math.round(n * DURATION_UNITS[match[2] as DurationUnit]);
}

/**
 * A duration in the largest unit that states it exactly, as a config would spell it.
 *
 * @example
 * ```ts
 * formatDuration(86_400_000 * 24); // '24d'
 * formatDuration(100);             // '100ms'
 * ```
 */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= DURATION_UNITS[unit] && ms % DURATION_UNITS[unit] === 0) return `${ms / DURATION_UNITS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/** What one duration key accepts, in milliseconds. */
export interface DurationRange {
  /** The shortest value accepted; 0 means 0 is fine. */
  min: number;
  /** The longest value accepted (default {@link MAX_DURATION}). */
  max?: number;
  /** With `min` > 0: what 0 would do, for the message. */
  zero?: string;
  /** With `min` > 0: 0 is accepted all the same, as a documented "off". */
  zeroIsOff?: boolean;
  /** Why `max`, when it is not {@link MAX_DURATION}. */
  maxWhy?: string;
}

/**
 * The longest duration by default: node's timers hold 2^31−1 ms (24.8 days); past that a timer
 * fires after 1 ms (TimeoutOverflowWarning), so a refresh interval turns into a busy loop.
 */
export const MAX_DURATION = 24 * DAY;

/** Network timeouts: 0 would turn them off, and under 100 ms no exchange over TLS completes. */
const TIMEOUT = 100;
const NO_TIMEOUT = 'turn the timeout off (a stalled upstream would hold its requests forever)';
const WINDOW = { min: 1, zero: 'leave no time to count requests in' };
const LONG = 3650 * DAY;
const LONG_WHY = 'ten years';

/**
 * Every duration key of the config and its range (docs/configuration.md, "Duration ranges").
 * `[]` steps into each item of a list (or the one object, for `listen`).
 * A duration key missing here would go unchecked: test/config/durations.test.ts holds it to the schema.
 */
export const DURATION_RANGES: Readonly<Record<string, DurationRange>> = {
  'listen[].tls.hsts.maxAge': { min: 0, max: LONG, maxWhy: LONG_WHY },
  'listen[].tls.reload.debounce': { min: 0 },
  'limits.headersTimeout': { min: TIMEOUT, zero: 'turn the timeout off (a client could hold a connection open with partial headers: slowloris)' },
  'limits.requestTimeout': { min: TIMEOUT, zero: 'turn the timeout off (a client could take forever to send a request)' },
  'limits.keepAliveTimeout': { min: TIMEOUT, zero: 'keep idle client connections open forever' },
  'limits.upstreamTimeout': { min: TIMEOUT, zero: NO_TIMEOUT },
  'limits.shutdownTimeout': { min: 0 },
  'limits.workerUnresponsiveTimeout': { min: 1000, zeroIsOff: true },
  'issuers[].clockSkew': { min: 0 },
  'issuers[].maxTokenAge': { min: 0 },
  // The refresh timer is jittered by ±10%: 22d × 1.1 still fits a timer.
  'issuers[].jwksRefresh': { min: TIMEOUT, max: 22 * DAY, maxWhy: 'with its 10% jitter, what a timer holds', zero: 'refetch the key set in a loop, hundreds of times a second' },
  'issuers[].jwksCooldown': { min: TIMEOUT, zero: 'let every token with an unknown kid start a key set fetch' },
  'issuers[].fetchTimeout': { min: TIMEOUT, zero: 'abort every key and discovery fetch at once' },
  'issuers[].introspection.cacheTtl': { min: 0 },
  'issuers[].introspection.negativeCacheTtl': { min: 0 },
  'issuers[].introspection.timeout': { min: TIMEOUT, zero: 'abort every introspection call at once' },
  'upstreams[].timeout': { min: TIMEOUT, zero: NO_TIMEOUT },
  'upstreams[].connectTimeout': { min: TIMEOUT, zero: 'turn the connect timeout off' },
  'upstreams[].keepAliveTimeout': { min: TIMEOUT, zero: 'be refused by the HTTP client at start' },
  // 0: an unreachable target stays in the rotation (its requests are still sent to another).
  'upstreams[].downFor': { min: 0 },
  'upstreams[].healthCheck.interval': { min: TIMEOUT, zero: 'probe every target in a loop' },
  'upstreams[].healthCheck.timeout': { min: TIMEOUT, zero: 'fail every probe at once' },
  'routes[].timeout': { min: TIMEOUT, zero: NO_TIMEOUT },
  'routes[].stepUp.maxAuthAge': { min: 0 },
  'routes[].websocket.idleTimeout': { min: 1000, zero: 'close every WebSocket connection as it opens' },
  'routes[].websocket.maxDuration': { min: 1000, zero: 'close every WebSocket connection as it opens' },
  'rateLimits[].window': WINDOW,
  'preAuthLimit.window': WINDOW,
  'authFailureLimit.window': WINDOW,
  'authFailureLimit.blockFor': { min: 1000, max: 7 * DAY, maxWhy: 'a week; an address blocked longer belongs in allowFrom or a firewall', zero: 'block no one' },
  // The connect timeout is 4 × this; a command slower than a minute is a store error anyway.
  'redis.timeout': { min: 10, max: 60_000, maxWhy: 'every limited request may wait this long', zero: 'time out every command: Redis would never be ready (with failOpen, every Redis limit silently off)' },
  'tokenHandler.loginStateTtl': { min: 1000, zero: 'expire every login before it can finish' },
  'tokenHandler.sessionTtl': { min: 1000, max: 400 * DAY, maxWhy: 'browsers keep a cookie at most 400 days', zero: 'end every session as it starts' },
  'gateway.tokenTtl': { min: 1000, zero: 'mint tokens that expire at once' },
  'dpop.proofMaxAge': { min: 1000, max: 600_000, maxWhy: 'a proof is for one request: a long-lived proof is a replayable credential', zero: 'refuse every proof' },
  'dpop.nonce.lifetime': { min: 10_000, max: 3_600_000, maxWhy: 'a nonce lives two windows: beyond two hours it no longer bounds how long a proof can be kept for later', zero: 'expire every nonce as it is issued' },
  'dpop.clockSkew': { min: 0, max: 300_000, maxWhy: 'a client clock further off than that needs fixing, not tolerating' },
  'cors.maxAge': { min: 0, max: DAY, maxWhy: 'browsers keep a preflight answer a day at most, Chromium two hours' },
  'gateway.keyRotationGrace': { min: 0 },
  'gateway.keyRotationInterval': { min: 3_600_000, zeroIsOff: true, max: LONG, maxWhy: LONG_WHY },
};

/**
 * Why `ms` is out of `range`, or undefined when it is in.
 *
 * @example
 * ```ts
 * checkDuration(0, DURATION_RANGES['limits.headersTimeout']!); // 'must be at least 100ms: 0 would turn the timeout off (…)'
 * ```
 */
export function checkDuration(ms: number, range: DurationRange): string | undefined {
  const max = range.max ?? MAX_DURATION;
  if (!(ms <= max)) return `must be at most ${formatDuration(max)} (${range.maxWhy ?? 'the longest duration node\'s timers hold'})`;
  if (ms >= range.min || (ms === 0 && range.zeroIsOff)) return undefined;
  const least = `must be at least ${formatDuration(range.min)}`;
  if (range.zeroIsOff) return `${least} (or 0 to turn it off)`;
  return ms === 0 && range.zero ? `${least}: 0 would ${range.zero}` : least;
}

/**
 * Check every duration of a raw (schema-valid) config against {@link DURATION_RANGES}; one
 * report per value out of range, with its key path.
 *
 * @example
 * ```ts
 * checkDurations(raw, (keyPath, message) => issues.push(locate(keyPath, message)));
 * ```
 */
export function checkDurations(raw: unknown, report: (keyPath: (string | number)[], message: string) => void): void {
  for (const [pattern, range] of Object.entries(DURATION_RANGES)) {
    visit(raw, pattern.split('.'), [], (keyPath, value) => {
      if (typeof value !== 'number' && typeof value !== 'string') return;
      let ms: number;
      try {
        ms = parseDuration(value);
      } catch {
        return; // not a duration at all: the schema said so already
      }
      const problem = checkDuration(ms, range);
      if (problem !== undefined) report(keyPath, problem);
    });
  }
}

function visit(node: unknown, parts: string[], at: (string | number)[], found: (keyPath: (string | number)[], value: unknown) => void): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return;
  const [head, ...rest] = parts as [string, ...string[]];
  const each = head.endsWith('[]');
  const key = each ? head.slice(0, -2) : head;
  const value = (node as Record<string, unknown>)[key];
  if (value === undefined) return;
  if (rest.length === 0) return found([...at, key], value);
  if (each && Array.isArray(value)) value.forEach((item, i) => visit(item, rest, [...at, key, i], found));
  else visit(value, rest, [...at, key], found);
}

/**
 * Parse a size into bytes: a number is bytes; strings take b, kb, mb, gb (powers of 1024; kib, mib, gib alike).
 *
 * @example
 * ```ts
 * parseSize('1mb'); // 1048576
 * ```
 */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const match = /^([0-9]+(?:\.[0-9]+)?)(b|kb|mb|gb|kib|mib|gib)$/.exec(value.toLowerCase());
  if (!match) throw new TypeError(`not a size: ${value}`);
  const unit = match[2]!.replace('i', '');
  const factor = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[unit as 'b' | 'kb' | 'mb' | 'gb'];
  return Math.round(Number(match[1]) * factor);
}
