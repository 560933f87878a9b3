/** Messages between gatehouse's cluster primary (`cli/cluster.ts`) and its workers (`cli/worker-control.ts`). */
export const WORKER_RELOAD = 'gatehouse:reload';
export const WORKER_SHUTDOWN = 'gatehouse:shutdown';
/** The primary's liveness check; a worker answers {@link WORKER_PONG} from its event loop. */
export const WORKER_PING = 'gatehouse:ping';
export const WORKER_PONG = 'gatehouse:pong';
/**
 * A worker listens for the primary's requests (its first step): reloads and shutdowns asked
 * before that are held by the primary and sent then.
 */
export const WORKER_HELLO = 'gatehouse:hello';
