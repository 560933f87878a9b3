import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';

/** The built CLI (npm test builds first). */
const BIN = path.resolve('bin/gatehouse.js');

/**
 * `gatehouse start` run as a user runs it (the built CLI in a process of its own): with
 * `--workers N`, a primary and its workers, whose JSON log lines are collected.
 *
 * @example
 * ```ts
 * const cluster = startCluster(file, '2');
 * const started = await cluster.waitFor((l) => l.msg === 'gatehouse started', 2);
 * ```
 */
export interface Cluster {
  child: ChildProcess;
  /** Parsed JSON log lines of the primary and every worker (they share stdout). */
  lines: Record<string, any>[];
  stderr: string;
  exited: Promise<number | null>;
  /** Resolves with the first `count` lines matching `pick` (rejects after `ms`). */
  waitFor(pick: (line: Record<string, any>) => boolean, count: number, ms?: number): Promise<Record<string, any>[]>;
}

/**
 * `cgroupProcs`: a cgroup's `cgroup.procs` file the gateway's process joins before node starts.
 * `nodeFlags`: flags on the primary's node command line (the operator's own).
 */
export function startCluster(configFile: string, workers: string | null, cgroupProcs?: string, nodeFlags: readonly string[] = []): Cluster {
  const args = [...nodeFlags, BIN, 'start', '--config', configFile, ...(workers === null ? [] : ['--workers', workers])];
  const child =
    cgroupProcs === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('sh', ['-c', 'echo $$ > "$0" && exec "$@"', cgroupProcs, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, any>[] = [];
  const waiters: (() => void)[] = [];
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ raw: line });
      }
    }
    for (const w of waiters.splice(0)) w();
  });
  const cluster: Cluster = {
    child,
    lines,
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    waitFor(pick, count, ms = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${count} log line(s); got:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${cluster.stderr}`)), ms);
        const check = () => {
          const found = lines.filter(pick);
          if (found.length >= count) {
            clearTimeout(timer);
            resolve(found.slice(0, count));
          } else waiters.push(check);
        };
        check();
      });
    },
  };
  child.stderr!.on('data', (d: Buffer) => (cluster.stderr += d.toString('utf8')));
  return cluster;
}

