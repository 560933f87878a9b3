import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { GATEWAY_V8_FLAGS, missingV8Flags } from '../../src/boot/v8-flags.js';

describe("gatehouse's V8 flags", () => {
  it("knows which of gatehouse's V8 flags a process lacks, and never overrides the operator's own", () => {
    expect(GATEWAY_V8_FLAGS).toEqual(['--heap-growing-percent=60']);
    expect(missingV8Flags([], undefined)).toEqual(['--heap-growing-percent=60']);
    expect(missingV8Flags(['--enable-source-maps', '--max-semi-space-size=16'], '')).toEqual(['--heap-growing-percent=60']);
    expect(missingV8Flags(['--heap-growing-percent=100'], undefined)).toEqual([]);
    expect(missingV8Flags(['--heap_growing_percent=80'], '--max-semi-space-size=2')).toEqual([]);
    expect(missingV8Flags([], '--enable-source-maps --heap_growing_percent=100')).toEqual([]);
  });

  it('sets a missing V8 flag in a running process, where V8 uses it at its next full GC', () => {
    // V8's own trace of how it sets the old generation's next limit: "Limit: … (factor)". The
    // script sets what is missing (as a single gatehouse process does at start), then collects.
    const dist = path.resolve('dist/boot/v8-flags.js');
    const script = `const { applyMissingV8Flags } = await import(${JSON.stringify(dist)}); const keep = []; for (let i = 0; i < 100000; i++) keep.push({ i }); gc(); console.log('APPLIED ' + JSON.stringify(applyMissingV8Flags(process.execArgv, undefined))); gc(); globalThis.keep = keep;`;
    const run = (flags: string[]) => {
      const out = spawnSync(process.execPath, ['--expose-gc', '--trace-gc-verbose', ...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(out.status, out.stderr).toBe(0);
      const applied = /^APPLIED (.*)$/m.exec(out.stdout)![1];
      const after = out.stdout.slice(out.stdout.indexOf('APPLIED'));
      const factor = /\[HeapController\] Limit: .*\(([\d.]+)\)$/m.exec(after)?.[1];
      return { applied: JSON.parse(applied!) as string[], factor };
    };
    // Without the flag: gatehouse sets it, and the next limit grows by 1.6×, not V8's own factor.
    expect(run([])).toEqual({ applied: ['--heap-growing-percent=60'], factor: '1.6' });
    // The operator's value on the command line stands, untouched (0: V8's own dynamic factor).
    expect(run(['--heap-growing-percent=100'])).toEqual({ applied: [], factor: '2.0' });
    const own = run(['--heap-growing-percent=0']);
    expect(own.applied).toEqual([]);
    expect(own.factor).toMatch(/^\d\.\d$/);
    expect(own.factor).not.toBe('1.6');
  });
});
