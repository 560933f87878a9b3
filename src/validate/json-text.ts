import { escapePointer } from './json-pointer.js';

/**
 * Reading a JSON request body the way every upstream parser will: strict UTF-8, one value, no
 * key twice in an object, nesting bounded. `JSON.parse` alone lets the last of two equal keys
 * win while other parsers take the first (a parser differential: the gateway would check one
 * value and the upstream act on another), takes any depth, and reads invalid UTF-8 as U+FFFD.
 */

/** The parsed body, or why it is not acceptable JSON (a sentence the client may read). */
export type JsonText = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string };

// `ignoreBOM: true` keeps a byte-order mark in the text (rather than dropping it silently), so
// JSON.parse refuses it as RFC 8259 §8.1 allows: the upstream gets the same bytes and may not skip it.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decode and parse a body as JSON, refusing what parsers disagree on.
 *
 * @example
 * ```ts
 * parseJsonBody(Buffer.from('{"a":1,"a":2}'), 32); // { ok: false, reason: 'the key "a" appears twice in one object (at /)' }
 * ```
 */
export function parseJsonBody(bytes: Uint8Array, maxDepth: number): JsonText {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    return { ok: false, reason: 'it is not valid UTF-8' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `it is not valid JSON (${(err as Error).message.replace(/\s+/g, ' ').slice(0, 120)})` };
  }
  // A bare string, number, true/false or null has no structure to check.
  if (typeof value !== 'object' || value === null) return { ok: true, value };
  const problem = structureProblem(text, maxDepth);
  return problem === null ? { ok: true, value } : { ok: false, reason: problem };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

/**
 * Walk text that `JSON.parse` accepted: a key twice in one object, or containers nested deeper
 * than `maxDepth`. Returns the reason, with the JSON pointer of the object or the place, or null.
 * Keys are compared decoded (`"a"` and `"\u0061"` are one key).
 */
export function structureProblem(text: string, maxDepth: number): string | null {
  // Per open container: its keys so far (an object) or null (an array); and where it is.
  const keys: (Set<string> | null)[] = [];
  const path: (string | number)[] = [];
  let expectKey = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        const d = text.charCodeAt(j);
        if (d === BACKSLASH) {
          escaped = true;
          j += 2;
        } else if (d === QUOTE) break;
        else j++;
      }
      if (expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        const seen = keys[keys.length - 1]!;
        if (seen.has(key)) return `the key ${JSON.stringify(key)} appears twice in one object (at ${pointer(path, path.length - 1)})`;
        seen.add(key);
        path[path.length - 1] = key;
        expectKey = false;
      }
      i = j;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (keys.length >= maxDepth) return `it nests objects and arrays deeper than ${maxDepth} levels (at ${pointer(path, path.length)})`;
      const object = c === OPEN_OBJECT;
      keys.push(object ? new Set() : null);
      path.push(object ? '' : 0);
      expectKey = object;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      keys.pop();
      path.pop();
      expectKey = false;
    } else if (c === COMMA) {
      const top = path.length - 1;
      if (keys[top] === null) path[top] = (path[top] as number) + 1;
      else expectKey = true;
    }
  }
  return null;
}

/** RFC 6901 pointer to the container at `depth` (its first `depth` steps). */
function pointer(path: readonly (string | number)[], depth: number): string {
  if (depth <= 0) return '/';
  let out = '';
  for (let i = 0; i < depth; i++) out += '/' + escapePointer(String(path[i]));
  return out;
}
