import { WORKER_HELLO, WORKER_PING, WORKER_PONG, WORKER_RELOAD, WORKER_SHUTDOWN } from './cluster-messages.js';

/** What a running worker does when its primary asks. */
export interface WorkerActions {
  reload(): void;
  stop(reason: string): void;
}

/**
 * A cluster worker's side of the primary's requests, listening from the worker's first step:
 * a reload or shutdown asked while the worker still starts (loading its config, opening its
 * listeners) is kept and carried out once the gateway runs — a shutdown asked before then means
 * the worker stops as soon as it has started. Tells the primary it listens ({@link WORKER_HELLO})
 * so the primary knows its requests can no longer be lost.
 *
 * @example
 * ```ts
 * const control = listenToPrimary();        // before the config is read
 * const gateway = await startGateway(...);
 * control.attach({ reload: () => gateway.reload(), stop: (why) => close(why) });
 * ```
 */
export function listenToPrimary(): { attach(actions: WorkerActions): void; readonly shutdownAsked: boolean } {
  let actions: WorkerActions | null = null;
  let reloadAsked = false;
  let shutdownAsked = false;
  process.on('message', (message: unknown) => {
    // The answer comes from this event loop, so a worker whose loop is held does not answer.
    if (message === WORKER_PING) process.send?.(WORKER_PONG);
    else if (message === WORKER_RELOAD) {
      if (actions) actions.reload();
      else reloadAsked = true;
    } else if (message === WORKER_SHUTDOWN) {
      if (actions) actions.stop('cluster');
      else shutdownAsked = true;
    }
  });
  process.send?.(WORKER_HELLO);
  return {
    get shutdownAsked() {
      return shutdownAsked;
    },
    attach(next) {
      actions = next;
      if (shutdownAsked) next.stop('cluster');
      // Its config may have been read before the file changed.
      else if (reloadAsked) next.reload();
    },
  };
}
