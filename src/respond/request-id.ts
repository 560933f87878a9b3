import { randomUUID } from 'node:crypto';

/**
 * Request ids gatehouse makes: UUID-shaped, unique without a random draw per request. A source
 * takes a random v4 UUID and counts in its last 48 bits (a fresh UUID when they run out), like
 * a per-worker UUID + counter. An id is a correlation handle, not a secret: clients may send
 * their own. `randomUUID()` per request cost ≈ 0.4 µs (its entropy refills; issue 8).
 *
 * @example
 * ```ts
 * const next = requestIds();
 * next(); // '5a2555ff-9ca7-4e8e-b4ea-000000000000'
 * next(); // '5a2555ff-9ca7-4e8e-b4ea-000000000001'
 * ```
 */
export function requestIds(limit = 2 ** 48): () => string {
  let prefix = '';
  let counter = limit;
  return () => {
    if (counter >= limit) {
      prefix = randomUUID().slice(0, 24);
      counter = 0;
    }
    const n = (counter++).toString(16);
    return prefix + (n.length === 12 ? n : '000000000000'.slice(n.length) + n);
  };
}

/**
 * The process's request ids: the runner's for requests that came without a usable one, and the
 * listeners' for the answers they give before the runner (431, 408 on HTTP/2).
 */
export const nextRequestId = requestIds();
