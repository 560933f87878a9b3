/** The introspection tests' scratch Redis: the shared test helper (test/helpers/redis.ts). */
export { startRedis as startScratchRedis, type TestRedis as ScratchRedis } from '../helpers/redis.js';
