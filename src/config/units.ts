/**
 * Parse a duration into milliseconds: a number is seconds; strings take ms, s, m, h, d.
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
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Math.round(n * factor);
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
