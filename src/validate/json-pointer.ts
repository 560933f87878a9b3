/** RFC 6901 JSON pointers: one place for their escaping and their walk. */

/** One RFC 6901 reference token: `~` → `~0`, `/` → `~1`. */
export function escapePointer(part: string): string {
  return part.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The value at an RFC 6901 pointer (`/components/schemas/Order`), or undefined. */
export function resolvePointer(root: unknown, pointer: string): unknown {
  if (pointer === '') return root;
  let node = root;
  for (const raw of pointer.slice(1).split('/')) {
    const part = decodeToken(raw);
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** A token as written in a URI fragment: percent-decoded (a malformed `%` kept as it is), then unescaped. */
function decodeToken(raw: string): string {
  let text = raw;
  if (raw.includes('%')) {
    try {
      text = decodeURIComponent(raw);
    } catch {
      text = raw;
    }
  }
  return text.replace(/~1/g, '/').replace(/~0/g, '~');
}
