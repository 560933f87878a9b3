/**
 * `@peculiar/x509` loads `tsyringe`, which refuses to start without a `Reflect.getMetadata`
 * polyfill (normally the `reflect-metadata` package, not a dependency of gatehouse). x509 only
 * decorates classes whose constructors take no parameters, so a metadata store that holds
 * what is defined and answers `undefined` otherwise is all it needs. Installed only when absent,
 * and only by the development-certificate module (demo and tests), never by the gateway.
 */
type MetadataReflect = typeof Reflect & {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

const R = Reflect as MetadataReflect;
if (typeof R.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<unknown, unknown>>();
  const own = (key: unknown, target: object) => store.get(target)?.get(key);
  R.defineMetadata = (key, value, target) => {
    let map = store.get(target);
    if (!map) store.set(target, (map = new Map()));
    map.set(key, value);
  };
  R.getOwnMetadata = own;
  R.getMetadata = (key, target) => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const value = own(key, t);
      if (value !== undefined) return value;
    }
    return undefined;
  };
}

export {};
