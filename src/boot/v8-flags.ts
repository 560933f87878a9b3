import v8 from 'node:v8';

/**
 * V8 flags every gateway process runs with, one process or each worker (measured in
 * docs/performance.md, "what was tried"):
 * - `--heap-growing-percent=60` lets the old generation grow by 60% of what survived the last
 *   full GC before the next one, instead of V8's dynamic factor (which let it double or more):
 *   peak RSS of one process under load 142–169 → 121 MiB (HTTP/1.1) and 180–194 → 128–142 MiB
 *   (HTTP/2), CPU per request unchanged.
 * `--max-semi-space-size=4` was among them until it was measured under HTTP/2 with several
 * streams per connection: together with this flag it cost 40% more CPU per request (70 against
 * 50 µs), since a small young generation promotes the in-flight streams' objects.
 * A flag the operator gives (on the command line or in `NODE_OPTIONS`) wins.
 */
export const GATEWAY_V8_FLAGS: readonly string[] = ['--heap-growing-percent=60'];

/**
 * Which of {@link GATEWAY_V8_FLAGS} a process started with `execArgv` and `NODE_OPTIONS` lacks
 * (a flag the operator set, with any value, counts as set).
 *
 * @example
 * ```ts
 * missingV8Flags([], undefined); // ['--heap-growing-percent=60']
 * missingV8Flags(['--heap-growing-percent=80'], undefined); // []
 * ```
 */
export function missingV8Flags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((arg) => arg.split('=')[0]!.replace(/_/g, '-')));
  return GATEWAY_V8_FLAGS.filter((flag) => !given.has(flag.split('=')[0]!));
}

/**
 * Give this process the {@link GATEWAY_V8_FLAGS} it was started without, now: every gateway
 * process (a single one, or each worker of a cluster) calls it at start, before the gateway
 * is loaded. V8 reads `--heap-growing-percent` each time
 * it sets the old generation's next limit (after every full GC), so setting it at start has the
 * effect it has on the command line (measured: the same peak RSS, 133–134 MiB under HTTP/2).
 * Only flags V8 reads while it runs may be in {@link GATEWAY_V8_FLAGS}: one it reads once at
 * start (the semi-space size) would be silently ignored here. Returns the flags it set.
 *
 * @example
 * ```ts
 * applyMissingV8Flags(process.execArgv, process.env.NODE_OPTIONS); // ['--heap-growing-percent=60']
 * ```
 */
export function applyMissingV8Flags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const missing = missingV8Flags(execArgv, nodeOptions);
  for (const flag of missing) v8.setFlagsFromString(flag);
  return missing;
}
