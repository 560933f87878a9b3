import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { autoWorkers, cgroupCpuLimit, logAutoWorkers } from '../../src/cli/cpu-limit.js';

// A tree of the files cgroupCpuLimit reads (/proc/self/mountinfo, /proc/self/cgroup and the
// cgroup files), laid out as the kernel and container runtimes lay them out. The real kernel
// interface is exercised in cluster.test.ts ("inside a CPU-limited cgroup").
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'gatehouse-cgroup-'));
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  }
  return root;
}

const V2_MOUNT = '30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';
const V1_MOUNTS =
  '25 24 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs rw,mode=755\n' +
  '29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,cpu,cpuacct\n' +
  '30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,memory\n' +
  '31 25 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n';

describe('cgroupCpuLimit: a CPU limit set for the process', () => {
  it('reads none where there is no cgroup file system to read (not Linux, no /proc)', () => {
    expect(cgroupCpuLimit(tree({}))).toBeNull();
    expect(cgroupCpuLimit(tree({ 'proc/self/mountinfo': V2_MOUNT }))).toBeNull();
  });

  it('cgroup v2: takes the tightest cpu.max of the process cgroup and its ancestors (a Kubernetes pod limit over an unlimited container)', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT,
      'proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
      'sys/fs/cgroup/kubepods/cpu.max': '400000 100000\n',
      'sys/fs/cgroup/kubepods/pod1/cpu.max': '150000 100000\n',
      'sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': 'max 100000\n',
    });
    expect(cgroupCpuLimit(root)).toEqual({ cpus: 1.5, file: path.join(root, 'sys/fs/cgroup/kubepods/pod1/cpu.max') });
  });

  it('cgroup v2: "max" everywhere is no limit', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT,
      'proc/self/cgroup': '0::/user.slice/session-1.scope\n',
      'sys/fs/cgroup/user.slice/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/user.slice/session-1.scope/cpu.max': 'max 100000\n',
    });
    expect(cgroupCpuLimit(root)).toBeNull();
  });

  it('cgroup v2 inside a container with its own cgroup namespace: the mount shows the container cgroup as /', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT,
      'proc/self/cgroup': '0::/\n',
      'sys/fs/cgroup/cpu.max': '50000 100000\n',
    });
    expect(cgroupCpuLimit(root)?.cpus).toBe(0.5);
  });

  it('cgroup v1 (docker without a cgroup namespace): the mount root is the container cgroup, the process path is below it', () => {
    const root = tree({
      'proc/self/mountinfo': V1_MOUNTS.replace('0:25 / /sys/fs/cgroup/cpu,cpuacct', '0:25 /docker/abc /sys/fs/cgroup/cpu,cpuacct'),
      'proc/self/cgroup': '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '200000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(root)).toEqual({ cpus: 2, file: path.join(root, 'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us') });
  });

  it('cgroup v1: a quota of -1 is no limit; a limited ancestor still counts (hybrid hierarchy, unified without cpu)', () => {
    const root = tree({
      'proc/self/mountinfo': V1_MOUNTS,
      'proc/self/cgroup': '4:cpu,cpuacct:/system.slice/gatehouse.service\n0::/system.slice/gatehouse.service\n',
      'sys/fs/cgroup/cpu,cpuacct/system.slice/gatehouse.service/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu,cpuacct/system.slice/gatehouse.service/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_quota_us': '300000\n',
      'sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(root)?.cpus).toBe(3);
  });

  it('ignores what it cannot read as a limit (garbage, zero, negative, a missing period) and never throws', () => {
    for (const [quota, period] of [
      ['garbage', '100000'],
      ['0', '100000'],
      ['-5', '100000'],
      ['100000', ''],
      ['100000', '0'],
      ['1.5', '100000'],
    ]) {
      const root = tree({
        'proc/self/mountinfo': V1_MOUNTS,
        'proc/self/cgroup': '4:cpu,cpuacct:/\n',
        'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': quota!,
        'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': period!,
      });
      expect(cgroupCpuLimit(root), `${quota} / ${period}`).toBeNull();
    }
    for (const max of ['', 'max', '100000', '0 100000', '100000 0', 'max max', '-1 100000']) {
      const root = tree({ 'proc/self/mountinfo': V2_MOUNT, 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': max });
      expect(cgroupCpuLimit(root), JSON.stringify(max)).toBeNull();
    }
    expect(cgroupCpuLimit(tree({ 'proc/self/mountinfo': 'not mountinfo\n\n - \n', 'proc/self/cgroup': ':::\nnothing\n' }))).toBeNull();
  });

  it('ignores a mount that shows another subtree than the process cgroup', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT.replace('0:26 / /sys/fs/cgroup', '0:26 /other /sys/fs/cgroup'),
      'proc/self/cgroup': '0::/mine\n',
      'sys/fs/cgroup/cpu.max': '100000 100000\n',
      'sys/fs/cgroup/mine/cpu.max': '100000 100000\n',
    });
    expect(cgroupCpuLimit(root)).toBeNull();
  });

  it('reads mount points with escaped spaces', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT.replace(' /sys/fs/cgroup ', ' /sys/fs/my\\040cgroup '),
      'proc/self/cgroup': '0::/\n',
      'sys/fs/my cgroup/cpu.max': '100000 100000\n',
    });
    expect(cgroupCpuLimit(root)?.cpus).toBe(1);
  });
});

describe('autoWorkers: --workers auto', () => {
  const limited = (max: string) => tree({ 'proc/self/mountinfo': V2_MOUNT, 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': max });

  it('is one per core without a limit', () => {
    expect(autoWorkers(tree({}), 16)).toEqual({ workers: 16, cores: 16, limit: null });
  });

  it('never forks more workers than the CPU limit allows, rounded up, and at least one', () => {
    expect(autoWorkers(limited('150000 100000'), 16).workers).toBe(2);
    expect(autoWorkers(limited('200000 100000'), 16).workers).toBe(2);
    expect(autoWorkers(limited('100000 100000'), 16).workers).toBe(1);
    expect(autoWorkers(limited('20000 100000'), 16).workers).toBe(1);
    expect(autoWorkers(limited('300000 1000000'), 16).workers).toBe(1);
  });

  it('never forks more than the cores the process may run on, whatever the limit', () => {
    expect(autoWorkers(limited('800000 100000'), 2)).toMatchObject({ workers: 2, cores: 2, limit: { cpus: 8 } });
  });

  it('says at start what it chose and why', () => {
    const lines: [object, string][] = [];
    const log = { info: (fields: object, msg: string) => void lines.push([fields, msg]) };
    const root = limited('150000 100000');
    logAutoWorkers(log, autoWorkers(root, 16));
    logAutoWorkers(log, autoWorkers(tree({}), 4));
    expect(lines[0]).toEqual([
      { workers: 2, cores: 16, cpuLimit: 1.5, cpuLimitFile: path.join(root, 'sys/fs/cgroup/cpu.max') },
      `workers auto: 2 (16 cores, a CPU limit of 1.5 from ${path.join(root, 'sys/fs/cgroup/cpu.max')})`,
    ]);
    expect(lines[1]).toEqual([{ workers: 4, cores: 4 }, 'workers auto: 4 (one per core)']);
  });
});
