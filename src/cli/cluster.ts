import cluster, { type Worker } from 'node:cluster';
import { NONCE_KEY_ENV, newNonceKey } from '../authn/dpop-nonce.js';
import type { Logger } from 'pino';
import { sendToWorker } from '../server/cluster-ipc.js';
import { serveClusterReadiness } from '../server/cluster-readiness.js';
import { CLUSTER_ENV, serveMergedMetrics } from '../telemetry/cluster-metrics.js';
import { createLogger } from '../telemetry/log.js';
import { autoWorkers, logAutoWorkers, type AutoWorkers } from './cpu-limit.js';
import type { GatehouseConfig } from '../config/types.js';

import { WORKER_HELLO, WORKER_PING, WORKER_PONG, WORKER_RELOAD, WORKER_SHUTDOWN } from './cluster-messages.js';

// A worker's side of these messages is in `cli/worker-control.ts`.
export { WORKER_HELLO, WORKER_PING, WORKER_PONG, WORKER_RELOAD, WORKER_SHUTDOWN };

/** Extra time a worker gets beyond `limits.shutdownTimeout` before it is killed. */
const SHUTDOWN_GRACE_MS = 5_000;
/** A worker that dies is replaced after this delay, doubled per quick death, up to the maximum. */
const RESPAWN_DELAY_MS = 250;
const RESPAWN_DELAY_MAX_MS = 10_000;
/** A worker that lived this long resets the respawn delay. */
const HEALTHY_LIFETIME_MS = 10_000;

/**
 * The limits whose counts live in each worker's memory (`store: memory` rate limits and quotas,
 * `maxConcurrent` on routes): with N workers each admits up to N times its limit.
 *
 * @example
 * ```ts
 * perWorkerLimits(config); // ['rateLimits.per-user', 'routes.orders.maxConcurrent']
 * ```
 */
export function perWorkerLimits(config: GatehouseConfig): string[] {
  const out: string[] = [];
  for (const r of config.rateLimits) if (r.store === 'memory') out.push(`rateLimits.${r.name}`);
  for (const q of config.quotas) if (q.store === 'memory') out.push(`quotas.${q.name}`);
  for (const r of config.routes) if (r.maxConcurrent !== undefined) out.push(`routes.${r.name}.maxConcurrent`);
  return out;
}

/**
 * Routes that expect DPoP-bound tokens (`senderConstrained: dpop` or `any`) while no top-level
 * `redis` shares the DPoP replay memory: with several workers, a proof replayed to another
 * worker within its lifetime would not be recognized (src/authn/dpop.ts).
 *
 * @example
 * ```ts
 * perWorkerDpopRoutes(config); // ['payments'] without redis, [] with it
 * ```
 */
export function perWorkerDpopRoutes(config: GatehouseConfig): string[] {
  if (config.redis) return [];
  return config.routes.filter((r) => r.senderConstrained === 'dpop' || r.senderConstrained === 'any').map((r) => r.name);
}

/**
 * Parse `--workers N|auto`: a whole number from 1 to 256, or `auto`: one per core this process
 * may use, within a cgroup CPU limit ({@link autoWorkers}), with what decided it (`auto`, for
 * the start-up log). Null when refused.
 *
 * @example
 * ```ts
 * parseWorkers('auto'); // { count: os.availableParallelism() or fewer under a CPU limit, auto: { workers, cores, limit } }
 * parseWorkers('4');    // { count: 4, auto: null }
 * parseWorkers('0');    // null (refused)
 * ```
 */
export function parseWorkers(flag: string): { count: number; auto: AutoWorkers | null } | null {
  if (flag === 'auto') {
    const auto = autoWorkers();
    return { count: auto.workers, auto };
  }
  if (!/^\d{1,3}$/.test(flag)) return null;
  const n = Number(flag);
  return n >= 1 && n <= 256 ? { count: n, auto: null } : null;
}

/**
 * `gatehouse start --workers N|auto`: the primary process forks N workers (each one a complete
 * gateway started from the same config file) that share the listening sockets; the primary
 * accepts connections and hands them out round-robin (Node's default cluster policy on Linux),
 * then stays out of the request path.
 *
 * - **Reload**: SIGHUP on the primary is passed to every worker, which reloads the config (and
 *   certificates) exactly as a single process does: a broken file is logged and the worker keeps
 *   its running plan. Each worker also watches the config file itself. A worker still starting
 *   gets the reload once it runs (its hello, then the worker holds it until its gateway runs).
 * - **Shutdown**: SIGTERM or SIGINT is passed to every worker, which stops accepting, finishes
 *   its in-flight requests (bounded by `limits.shutdownTimeout`) and exits; a worker still alive
 *   5 s after that is killed. A worker still starting stops as soon as it has started. The primary exits 0 when every worker stopped by itself, else 1.
 * - **Hangs**: the primary pings every listening worker; one that answers none for
 *   `limits.workerUnresponsiveTimeout` (default 30 s) is killed and so replaced like a crash.
 * - **Crashes**: a worker that dies is replaced (with a growing delay while replacements keep
 *   dying, e.g. because the config file on disk is broken now; the other workers keep serving).
 *   At start-up, a worker that dies before any worker ever listened (a port in use, a key file
 *   missing) stops the whole cluster with exit code 1 rather than looping.
 *
 * State is per worker: in-memory rate limits, quotas, token and introspection caches. With N
 * workers an in-memory limit of L admits up to N × L (each worker counts alone); use
 * `store: redis` for exact limits across workers and instances (docs/performance.md).
 *
 * `config` is `configFile` as the caller loaded it (read once; each worker reads the file
 * itself), `count` the workers to run (`parseWorkers`, or `auto`'s choice, which
 * `options.auto` carries to the start-up log).
 *
 * @example
 * ```sh
 * gatehouse start --config gatehouse.yaml --workers auto
 * kill -HUP <primary pid>    # every worker reloads the config
 * kill -TERM <primary pid>   # graceful stop of every worker, exit 0
 * ```
 */
export async function runCluster(
  configFile: string,
  config: GatehouseConfig,
  count: number,
  options: { log?: Logger; auto?: AutoWorkers | null } = {},
): Promise<number> {
  const log = options.log ?? createLogger({ level: config.log.level });
  const shutdownTimeout = config.limits.shutdownTimeout;
  const perWorker = perWorkerLimits(config);
  if (options.auto) logAutoWorkers(log, options.auto);
  if (count > 1 && perWorker.length > 0) {
    log.warn(
      { workers: count, limits: perWorker },
      `in-memory limits count per worker: with ${count} workers each admits up to ${count} times its limit; store: redis keeps one count across workers (or --workers 1)`,
    );
  }

  const dpopRoutes = perWorkerDpopRoutes(config);
  if (count > 1 && dpopRoutes.length > 0) {
    log.warn(
      { workers: count, routes: dpopRoutes },
      `DPoP proofs are remembered per worker: with ${count} workers a proof replayed to another worker within its lifetime is not recognized; a top-level redis section shares the replay memory (or --workers 1)`,
    );
  }

  // Workers answer a scrape with every worker's metrics, merged here (src/telemetry/cluster-metrics.ts).
  serveMergedMetrics();
  cluster.setupPrimary({
    exec: process.argv[1],
    // Node flags as the primary's own (cluster's default): each worker then sets the
    // GATEWAY_V8_FLAGS it lacks at start, as a single process does (boot/v8-flags.ts).
    args: ['start', '--config', configFile, '--workers', '1'],
  });

  const listened = new WeakSet<Worker>();
  let everServed = false;
  const bornAt = new WeakMap<Worker, number>();
  let respawnDelay = RESPAWN_DELAY_MS;
  let stopping = false;
  let failed = false;
  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));

  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  /** The workers the primary hands connections to. */
  const listening = (): Worker[] => live().filter((w) => listened.has(w));
  // /readyz on any worker answers for every worker the primary hands connections to.
  serveClusterReadiness(listening);
  const nonceKey = newNonceKey();
  const fork = () => {
    if (stopping) return;
    // One DPoP nonce key for every worker (dpop.nonce without a secret): a nonce one worker
    // hands out is good on the others.
    const worker = cluster.fork({ [CLUSTER_ENV]: '1', [NONCE_KEY_ENV]: nonceKey });
    bornAt.set(worker, Date.now());
  };

  // The watchdog: a worker that answers no ping for `unresponsive` ms (an event loop held by a
  // bug, a process stopped) still gets its share of new connections and holds the ones it has;
  // it is killed, and the exit handler below starts another.
  const unresponsive = config.limits.workerUnresponsiveTimeout;
  const lastPong = new WeakMap<Worker, number>();
  // A worker that has not said hello yet (still loading) would lose a message: a reload or
  // shutdown asked meanwhile waits here and goes out with its hello.
  const heard = new WeakSet<Worker>();
  const reloadOwed = new WeakSet<Worker>();
  const onMessage = (worker: Worker, message: unknown) => {
    if (message === WORKER_PONG) lastPong.set(worker, Date.now());
    else if (message === WORKER_HELLO && !heard.has(worker)) {
      heard.add(worker);
      if (stopping) sendToWorker(worker, WORKER_SHUTDOWN);
      else if (reloadOwed.has(worker)) {
        reloadOwed.delete(worker);
        sendToWorker(worker, WORKER_RELOAD);
      }
    }
  };
  const watchdog =
    unresponsive > 0
      ? setInterval(
          () => {
            if (stopping) return;
            const now = Date.now();
            for (const worker of listening()) {
              const silent = now - (lastPong.get(worker) ?? now);
              if (silent > unresponsive) {
                log.error({ worker: worker.process.pid, silentMs: silent }, 'worker unresponsive; killing it (a new one starts)');
                lastPong.delete(worker);
                worker.process.kill('SIGKILL');
              } else sendToWorker(worker, WORKER_PING);
            }
          },
          Math.max(100, Math.min(5_000, Math.floor(unresponsive / 4))),
        )
      : null;
  watchdog?.unref();
  cluster.on('message', onMessage);

  const onListening = (worker: Worker) => {
    if (listened.has(worker)) return;
    listened.add(worker);
    lastPong.set(worker, Date.now());
    everServed = true;
    log.info({ worker: worker.process.pid }, 'worker serving');
  };
  const onExit = (worker: Worker, code: number | null, signal: string | null) => {
    if (stopping) {
      if (code !== 0) failed = true;
      if (live().length === 0) finish();
      return;
    }
    if (!listened.has(worker) && !everServed) {
      // At start-up: the same cause (a port in use, a missing key file) would kill every retry.
      log.error({ worker: worker.process.pid, code, signal }, 'a worker failed before it could serve; stopping the cluster');
      failed = true;
      shutdown('worker-failed');
      return;
    }
    // Later, a replacement that cannot start (say the file on disk is broken now) is retried
    // with a growing delay while the other workers keep serving.
    const lived = Date.now() - (bornAt.get(worker) ?? 0);
    respawnDelay = lived > HEALTHY_LIFETIME_MS ? RESPAWN_DELAY_MS : Math.min(respawnDelay * 2, RESPAWN_DELAY_MAX_MS);
    log.warn({ worker: worker.process.pid, code, signal, respawnInMs: respawnDelay }, 'worker exited unexpectedly; starting another');
    setTimeout(fork, respawnDelay).unref();
  };

  let killTimer: NodeJS.Timeout | null = null;
  const finish = () => {
    if (killTimer) clearTimeout(killTimer);
    if (watchdog) clearInterval(watchdog);
    cluster.off('message', onMessage);
    cluster.off('listening', onListening);
    cluster.off('exit', onExit);
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
    log.info({ failed }, 'gatehouse cluster stopped');
    resolveDone(failed ? 1 : 0);
  };
  const shutdown = (reason: string) => {
    if (stopping) return;
    stopping = true;
    const workers = live();
    log.info({ reason, workers: workers.length }, 'shutting down the workers');
    if (workers.length === 0) return finish();
    for (const worker of workers) if (heard.has(worker)) sendToWorker(worker, WORKER_SHUTDOWN);
    killTimer = setTimeout(() => {
      for (const worker of live()) {
        log.error({ worker: worker.process.pid }, 'worker did not stop in time; killing it');
        failed = true;
        worker.process.kill('SIGKILL');
      }
    }, shutdownTimeout + SHUTDOWN_GRACE_MS);
    killTimer.unref();
  };
  const onTerm = () => shutdown('SIGTERM');
  const onInt = () => shutdown('SIGINT');
  const onHup = () => {
    const workers = live();
    log.info({ workers: workers.length }, 'reload requested: passing it to every worker');
    for (const worker of workers) {
      if (heard.has(worker)) sendToWorker(worker, WORKER_RELOAD);
      else reloadOwed.add(worker);
    }
  };

  cluster.on('listening', onListening);
  cluster.on('exit', onExit);
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  process.on('SIGHUP', onHup);
  log.info({ workers: count }, 'starting gatehouse workers');
  for (let i = 0; i < count; i++) fork();
  return done;
}

