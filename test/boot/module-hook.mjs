// A module-resolution hook for shape-probe.mjs (`module.register`): posts every URL resolved
// after it is registered to the probe's port, so that the probe can tell which ES modules a
// gateway loaded (they have no `require.cache`).
let port;

export async function initialize(data) {
  port = data.port;
}

export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  port.postMessage(resolved.url);
  return resolved;
}
