// Run by shapes.test.ts as `node --allow-natives-syntax --expose-gc shape-probe.mjs <root> <config>`:
// starts a gateway from the built code and reports whether V8 still shares object shapes
// afterwards (`compileMs`, the three later reads' times, is for a reader of the output only).
const [root, configFile] = process.argv.slice(2);
// Every module resolved from here on is reported through a port (test/boot/module-hook.mjs).
const { register } = await import('node:module');
const { MessageChannel } = await import('node:worker_threads');
const resolved = [];
const channel = new MessageChannel();
channel.port1.on('message', (url) => resolved.push(url));
channel.port1.unref();
register(new URL('./module-hook.mjs', import.meta.url), { data: { port: channel.port2 }, transferList: [channel.port2] });
const { loadConfigFile } = await import(`${root}/dist/config/load.js`);
const { startGateway } = await import(`${root}/dist/gateway.js`);
const { keptTickObject } = await import(`${root}/dist/boot/tick-shape.js`);
const { createHook } = await import('node:async_hooks');
const gateway = await startGateway({ config: loadConfigFile(configFile), logDestination: { write() {} } });

// A reload reads the file again. The schema validator is held weakly (src/config/load.ts): after a
// full GC it is gone and the next read compiles it anew, which must not cost the shapes either.
const compileMs = [];
for (let i = 0; i < 3; i++) {
  await new Promise((resolve) => setTimeout(resolve, 0)); // a WeakRef's target is kept until the job ends
  globalThis.gc();
  const t0 = performance.now();
  loadConfigFile(configFile);
  compileMs.push(performance.now() - t0);
}

// A broken file read by a recompiled validator is still refused, naming the key.
const { readFileSync, writeFileSync } = await import('node:fs');
const broken = `${configFile}.broken.yaml`;
writeFileSync(broken, readFileSync(configFile, 'utf8').replace('scopes:', 'scops:'));
await new Promise((resolve) => setTimeout(resolve, 0));
globalThis.gc();
let brokenRefused = null;
try {
  loadConfigFile(broken);
} catch (err) {
  brokenRefused = err.issues?.map((issue) => issue.path) ?? [String(err)];
}

// A config without Redis never loads the Redis client library (CommonJS: it shows in require.cache).
const { createRequire } = await import('node:module');
const ioredisLoaded = Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes('/node_modules/ioredis/'));
// Nor, without claim rules, the CEL library (an ES module: seen through the resolve hook).
await new Promise((resolve) => setTimeout(resolve, 50)); // the hook's messages arrive on this thread's loop
const celLoaded = resolved.some((url) => url.includes('/node_modules/@marcbachmann/cel-js/'));
// Nor, without a token handler or an introspected issuer, jose (their JOSE library).
const joseLoaded = resolved.some((url) => url.includes('/node_modules/jose/'));
const modulesSeen = resolved.length;

// Plain objects that gain the same first property must share one map. They stop doing so when
// the empty object's map has run out of transitions (V8 allows 1536): every header object,
// parsed JSON and request context then gets a map of its own, and property access goes megamorphic.
const shared = [];
for (let i = 0; i < 8; i++) {
  const key = `probe_${i}_${Math.random().toString(36).slice(2)}`;
  const a = {};
  a[key] = 1;
  const b = {};
  b[key] = 2;
  shared.push(%HaveSameMap(a, b));
}

// The tick object caught before anything was loaded still has the shape a new tick gets now.
let fresh;
const hook = createHook({ init(_id, type, _trigger, resource) { if (type === 'TickObject' && !fresh) fresh = resource; } });
hook.enable();
process.nextTick(() => {});
hook.disable();
const kept = keptTickObject();
const tickShapeKept = kept !== undefined && fresh !== undefined && %HaveSameMap(kept, fresh);

await gateway.close();
process.stdout.write(`${JSON.stringify({ sharedShapes: shared.every(Boolean), tickShapeKept, ioredisLoaded, celLoaded, joseLoaded, modulesSeen, brokenRefused, compileMs })}\n`);
process.exit(0);
