/** A form body read as every parser reads it, or why it cannot be. */
export type ParsedForm = { readonly ok: true; readonly value: Record<string, string | string[]> } | { readonly ok: false; readonly reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const SEMICOLON = 0x3b;

/**
 * Read an `application/x-www-form-urlencoded` body (WHATWG URL, "application/x-www-form-urlencoded
 * parsing") as an object: each field's name to its decoded value, a name given more than once to
 * an array of its values, no prototype (a field named `__proto__` is a field like any other).
 *
 * Only what every parser reads alike is accepted, so the fields checked are the fields the
 * upstream acts on:
 * - valid UTF-8, raw or percent-encoded (a decoder that writes U+FFFD and one that refuses, or
 *   reads Latin-1, would see other text);
 * - every `%` followed by two hex digits (some parsers keep a stray `%` as it is, others drop or
 *   refuse it);
 * - no byte-order mark;
 * - no raw `;` — older parsers (Python's before 3.9.2, Rack's before 3) split fields on it as on
 *   `&`, so `a=1;role=admin` is one field here and two there. A form encoder always sends `%3B`.
 *
 * `+` is a space; empty sequences (`a=1&&b=2`) are skipped; a field without `=` has the value ''.
 *
 * @example
 * ```ts
 * parseFormBody(Buffer.from('qty=2&tag=a&tag=b')); // { ok: true, value: { qty: '2', tag: ['a', 'b'] } }
 * parseFormBody(Buffer.from('qty=2;role=admin'));  // { ok: false, reason: 'a raw ";" …' }
 * ```
 */
export function parseFormBody(bytes: Uint8Array): ParsedForm {
  if (bytes.indexOf(SEMICOLON) !== -1) {
    return { ok: false, reason: 'the form has a raw ";" (some parsers split fields on it as on "&"): send it percent-encoded, %3B' };
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: 'the form is not valid UTF-8' };
  }
  // Kept by the decoder (ignoreBOM), it would be part of the first field's name here and not there.
  if (text.charCodeAt(0) === 0xfeff) return { ok: false, reason: 'the form starts with a byte-order mark' };
  const out = Object.create(null) as Record<string, string | string[]>;
  let start = 0;
  let field = 0;
  while (start <= text.length) {
    let end = text.indexOf('&', start);
    if (end === -1) end = text.length;
    if (end > start) {
      field++;
      const sequence = text.slice(start, end);
      const equals = sequence.indexOf('=');
      const name = decode(equals === -1 ? sequence : sequence.slice(0, equals));
      const value = equals === -1 ? '' : decode(sequence.slice(equals + 1));
      if (name === null || value === null) {
        return { ok: false, reason: `field ${field} of the form has a malformed percent-encoding (a "%" not followed by two hex digits, or bytes that are not UTF-8)` };
      }
      const held = out[name];
      if (held === undefined) out[name] = value;
      else if (typeof held === 'string') out[name] = [held, value];
      else held.push(value);
    }
    start = end + 1;
  }
  return { ok: true, value: out };
}

/** One name or value: `+` to a space, then percent-decoded (null: malformed, or not UTF-8). */
function decode(raw: string): string | null {
  const spaced = raw.indexOf('+') === -1 ? raw : raw.replaceAll('+', ' ');
  if (spaced.indexOf('%') === -1) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    return null;
  }
}
