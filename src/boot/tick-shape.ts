// Keeps `process.nextTick` on V8's fast path for the life of the process.
//
// Node 20's `process.nextTick` builds each queued tick as an object literal with two computed
// keys (`{ [async_id_symbol]: …, [trigger_async_id_symbol]: …, callback, args }`). V8 records one
// map per computed-key store and, unlike other stores, goes straight from monomorphic to
// *megamorphic* the first time it sees another map, for good. That happens when a full GC runs
// while no tick object is alive: the tick objects' maps die, the next tick builds fresh ones, and
// from then on every `nextTick` in the process — a dozen per proxied request inside node:http,
// streams and undici — takes a runtime call and migrates maps instead of a few inline stores.
// gatehouse's start-up (config schema, modules) allocates enough to make that full GC likely, so
// the gateway paid it on every request: ≈ 10% of its CPU on the public route (`perf` samples in
// `Runtime_DefineKeyedOwnPropertyInLiteral`), none in a bare node:http + undici process.
//
// One tick object kept alive keeps those maps alive. It is caught through an async hook that is
// enabled for one `nextTick` call and disabled again at once, before anything else is loaded:
// import this module first in every entry point. Nothing else about the process changes.
import { createHook } from 'node:async_hooks';

const kept: object[] = [];

function keepTickShape(): void {
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && kept.length === 0) kept.push(resource);
    },
  });
  hook.enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
}

function noop(): void {}

keepTickShape();

/** The tick object held (for tests: a later tick object must share its map). */
export function keptTickObject(): object | undefined {
  return kept[0];
}
