import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';

/**
 * A CPU bandwidth limit of the cgroup gatehouse runs in: `cpus` cores' worth of time (1.5 = one
 * and a half cores), read from `file`.
 */
export interface CpuLimit {
  readonly cpus: number;
  readonly file: string;
}

/** What `--workers auto` decided, and why. */
export interface AutoWorkers {
  readonly workers: number;
  /** `os.availableParallelism()`: the cores this process may run on (its CPU affinity). */
  readonly cores: number;
  /** The tightest cgroup CPU limit, or null when there is none (or none could be read). */
  readonly limit: CpuLimit | null;
}

interface Mount {
  /** The cgroup path mounted (`/` unless the mount shows only a subtree). */
  readonly root: string;
  readonly point: string;
  readonly version: 1 | 2;
}

// mountinfo escapes space, tab, newline and backslash in paths as octal (`\040`).
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** cgroup v2 mounts, and v1 mounts that carry the `cpu` controller (proc(5), mountinfo). */
function cgroupMounts(mountinfo: string): Mount[] {
  const out: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep === -1) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOptions = ''] = line.slice(sep + 3).split(' ');
    if (left.length < 5) continue;
    const root = unescape(left[3]!);
    const point = unescape(left[4]!);
    if (fstype === 'cgroup2') out.push({ root, point, version: 2 });
    else if (fstype === 'cgroup' && superOptions.split(',').includes('cpu')) out.push({ root, point, version: 1 });
  }
  return out;
}

/** This process's cgroup path per hierarchy: v2 (`0::/path`) and v1's `cpu` controller. */
function cgroupPaths(procCgroup: string): { v1: string | null; v2: string | null } {
  let v1: string | null = null;
  let v2: string | null = null;
  for (const line of procCgroup.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first === -1 || second === -1) continue;
    const controllers = line.slice(first + 1, second);
    const where = line.slice(second + 1);
    if (line.slice(0, first) === '0' && controllers === '') v2 = where;
    else if (controllers.split(',').includes('cpu')) v1 = where;
  }
  return { v1, v2 };
}

/** The limit one cgroup directory sets, in cores, or null (none, or unreadable). */
function limitAt(dir: string, version: 1 | 2): CpuLimit | null {
  if (version === 2) {
    const file = path.join(dir, 'cpu.max');
    const m = /^(\d+)\s+(\d+)\s*$/.exec(read(file) ?? ''); // "max 100000" when unlimited
    return m && Number(m[1]) > 0 && Number(m[2]) > 0 ? { cpus: Number(m[1]) / Number(m[2]), file } : null;
  }
  const file = path.join(dir, 'cpu.cfs_quota_us');
  const quota = Number((read(file) ?? '').trim()); // -1 when unlimited
  const period = Number((read(path.join(dir, 'cpu.cfs_period_us')) ?? '').trim());
  return Number.isInteger(quota) && quota > 0 && Number.isInteger(period) && period > 0 ? { cpus: quota / period, file } : null;
}

/**
 * The tightest CPU bandwidth limit on this process: its own cgroup's and every ancestor's up to
 * the mount, in cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`), which
 * is how containers get `docker run --cpus` or a Kubernetes CPU limit. A CPU limit does not
 * narrow a process's affinity, so `os.availableParallelism()` still counts the host's cores.
 * Files that are missing or unreadable count as no limit; this never throws.
 *
 * `fsRoot` prefixes every path read (tests point it at a tree of their own).
 *
 * @example
 * ```ts
 * cgroupCpuLimit(); // { cpus: 1.5, file: '/sys/fs/cgroup/cpu.max' } under `docker run --cpus 1.5`
 * ```
 */
export function cgroupCpuLimit(fsRoot = '/'): CpuLimit | null {
  const mountinfo = read(path.join(fsRoot, 'proc/self/mountinfo'));
  const procCgroup = read(path.join(fsRoot, 'proc/self/cgroup'));
  if (mountinfo === null || procCgroup === null) return null;
  const paths = cgroupPaths(procCgroup);
  let tightest: CpuLimit | null = null;
  for (const mount of cgroupMounts(mountinfo)) {
    const own = mount.version === 2 ? paths.v2 : paths.v1;
    if (own === null) continue;
    // The mount shows the subtree at `root`: this process's directory is its path below that.
    const below = mount.root === '/' ? own : own === mount.root ? '/' : own.startsWith(`${mount.root}/`) ? own.slice(mount.root.length) : null;
    if (below === null) continue;
    const top = path.join(fsRoot, mount.point);
    for (let dir = path.join(top, below); ; dir = path.dirname(dir)) {
      const limit = limitAt(dir, mount.version);
      if (limit !== null && (tightest === null || limit.cpus < tightest.cpus)) tightest = limit;
      if (dir === top || !dir.startsWith(`${top}/`)) break;
    }
  }
  return tightest;
}

/**
 * `--workers auto`: one worker per core this process may use — its CPU affinity
 * (`os.availableParallelism()`), and no more than a cgroup CPU limit allows, rounded up
 * (1.5 CPUs: 2 workers; 0.5: 1). Forking one worker per host core inside a container limited to
 * one CPU would only add memory and contention.
 *
 * @example
 * ```ts
 * autoWorkers(); // { workers: 2, cores: 16, limit: { cpus: 2, file: '/sys/fs/cgroup/cpu.max' } }
 * ```
 */
export function autoWorkers(fsRoot = '/', cores = availableParallelism()): AutoWorkers {
  const limit = cgroupCpuLimit(fsRoot);
  // 1e-9: a quota that is a whole number of periods is not rounded up by float error.
  const workers = limit === null ? cores : Math.max(1, Math.min(cores, Math.ceil(limit.cpus - 1e-9)));
  return { workers, cores, limit };
}

/**
 * Say what `--workers auto` chose, at start: the cores, and the cgroup CPU limit that capped
 * them, if any.
 */
export function logAutoWorkers(log: { info(fields: object, msg: string): void }, auto: AutoWorkers): void {
  const { workers, cores, limit } = auto;
  if (limit === null) log.info({ workers, cores }, `workers auto: ${workers} (one per core)`);
  else
    log.info(
      { workers, cores, cpuLimit: limit.cpus, cpuLimitFile: limit.file },
      `workers auto: ${workers} (${cores} cores, a CPU limit of ${Number(limit.cpus.toFixed(2))} from ${limit.file})`,
    );
}
