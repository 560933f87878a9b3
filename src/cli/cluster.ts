import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';

/**
 * `gatehouse start --workers N|auto`: a primary process forks N workers that share the
 * listening sockets (round-robin). SIGHUP is passed on as a reload to every worker; SIGTERM and
 * SIGINT shut every worker down gracefully. A worker that dies unexpectedly is replaced.
 *
 * In-memory rate limits and caches are per worker: with N workers an in-memory limit admits up
 * to N × the limit. Use the Redis store for exact limits (docs/rate-limits.md).
 *
 * @example
 * ```sh
 * gatehouse start --config gatehouse.yaml --workers auto
 * ```
 */
export async function runCluster(configFile: string, workersFlag: string): Promise<number> {
  const count = workersFlag === 'auto' ? availableParallelism() : Number(workersFlag);
  if (!Number.isInteger(count) || count < 1 || count > 256) {
    process.stderr.write(`gatehouse: --workers must be a whole number from 1 to 256, or auto (got "${workersFlag}")\n`);
    return 2;
  }
  cluster.setupPrimary({ exec: process.argv[1], args: ['start', '--config', configFile, '--workers', '1'] });
  let stopping = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < count; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    process.stderr.write(`gatehouse: worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`);
    setTimeout(fork, 500).unref();
  });
  return new Promise<number>((resolve) => {
    const stop = () => {
      if (stopping) return;
      stopping = true;
      for (const worker of Object.values(cluster.workers ?? {})) worker?.send('gatehouse:shutdown');
      const check = setInterval(() => {
        if (Object.keys(cluster.workers ?? {}).length === 0) {
          clearInterval(check);
          resolve(0);
        }
      }, 50);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.send('gatehouse:reload');
    });
  });
}
