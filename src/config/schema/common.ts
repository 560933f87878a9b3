/** Shared JSON Schema pieces. Every object in the config schema is closed (`additionalProperties: false`). */

export type JsonSchema = Record<string, unknown>;

/**
 * `30s`, `5m`, `250ms`, `1h`, `1d`, or a number of seconds. The form only: each key's range (no 0
 * for timeouts, at most 24d for most) is checked at load, from units.ts DURATION_RANGES.
 */
export const duration: JsonSchema = {
  description:
    'A duration: a number of seconds, or a string like 250ms, 30s, 5m, 1h, 1d. Timeouts take no 0 and most keys at most 24d: docs/configuration.md, "Duration ranges", lists the range of each key.',
  anyOf: [
    { type: 'number', minimum: 0 },
    { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)$' },
  ],
};

/** `1mb`, `64kb`, `512b`, or a number of bytes. */
export const size: JsonSchema = {
  description: 'A size: a number of bytes, or a string like 512b, 64kb, 1mb, 1gb.',
  anyOf: [
    { type: 'integer', minimum: 0 },
    { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(b|kb|mb|gb|kib|mib|gib)$' },
  ],
};

export const name: JsonSchema = {
  type: 'string',
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$',
  description: 'A name: letters, digits, ".", "_" and "-", at most 64 characters.',
};

export const nonEmptyString: JsonSchema = { type: 'string', minLength: 1 };

export const stringList: JsonSchema = { type: 'array', items: nonEmptyString };

export const port: JsonSchema = { type: 'integer', minimum: 0, maximum: 65535 };

export const httpUrl: JsonSchema = { type: 'string', pattern: '^https?://', description: 'An http:// or https:// URL.' };

export function closed(properties: Record<string, JsonSchema>, required: string[] = [], extra: JsonSchema = {}): JsonSchema {
  return { type: 'object', additionalProperties: false, properties, required, ...extra };
}
