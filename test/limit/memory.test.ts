import { describe, expect, it } from 'vitest';
import { createMemoryRateLimiter, LruTable } from '../../src/limit/memory.js';

function frozenClock(start = 1_700_000_000_000) {
  const clock = { now: start, tick: (ms: number) => (clock.now += ms), read: () => clock.now };
  return clock;
}

describe('GCRA in memory (frozen clock)', () => {
  it('admits exactly `burst` requests at once, refuses the next, and admits one more after T = window/limit', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 10, window: 1000, burst: 10 }, { now: clock.read });
    for (let i = 0; i < 10; i++) {
      const d = limiter.consume('k');
      expect(d.allowed).toBe(true);
      expect(d.remaining).toBe(9 - i);
    }
    const refused = limiter.consume('k');
    expect(refused.allowed).toBe(false);
    expect(refused.remaining).toBe(0);
    expect(refused.retryAfter).toBeCloseTo(100, 6); // T = 1000 ms / 10
    clock.tick(99);
    expect(limiter.consume('k').allowed).toBe(false);
    clock.tick(1);
    const again = limiter.consume('k');
    expect(again.allowed).toBe(true);
    expect(again.remaining).toBe(0);
    expect(limiter.consume('k').allowed).toBe(false);
  });

  it('refills at the steady rate, never more than the burst (no double burst at window edges)', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 10, window: 1000, burst: 10 }, { now: clock.read });
    for (let i = 0; i < 10; i++) limiter.consume('k');
    clock.tick(1000); // a whole window later: the bucket is full again, not twice full
    let admitted = 0;
    for (let i = 0; i < 25; i++) if (limiter.consume('k').allowed) admitted++;
    expect(admitted).toBe(10);
    clock.tick(10_000); // idle for long: still only `burst`
    admitted = 0;
    for (let i = 0; i < 25; i++) if (limiter.consume('k').allowed) admitted++;
    expect(admitted).toBe(10);
  });

  it('a request every T passes forever; one faster than T is refused once the burst is spent', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 100, window: 60_000, burst: 1 }, { now: clock.read });
    for (let i = 0; i < 50; i++) {
      expect(limiter.consume('k').allowed).toBe(true);
      clock.tick(600);
    }
    expect(limiter.consume('k').allowed).toBe(true);
    clock.tick(599);
    const d = limiter.consume('k');
    expect(d.allowed).toBe(false);
    expect(d.retryAfter).toBeCloseTo(1, 6);
  });

  it('a burst smaller than the limit caps back-to-back requests but keeps the steady rate', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 60, window: 60_000, burst: 3 }, { now: clock.read });
    expect([1, 2, 3, 4].map(() => limiter.consume('k').allowed)).toEqual([true, true, true, false]);
    clock.tick(1000);
    expect([1, 2].map(() => limiter.consume('k').allowed)).toEqual([true, false]);
  });

  it('a refused request changes nothing (hammering does not push the retry time out)', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 1, window: 1000, burst: 1 }, { now: clock.read });
    expect(limiter.consume('k').allowed).toBe(true);
    for (let i = 0; i < 100; i++) expect(limiter.consume('k').allowed).toBe(false);
    clock.tick(1000);
    expect(limiter.consume('k').allowed).toBe(true);
  });

  it('keys are independent', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 1, window: 1000, burst: 1 }, { now: clock.read });
    expect(limiter.consume('a').allowed).toBe(true);
    expect(limiter.consume('a').allowed).toBe(false);
    expect(limiter.consume('b').allowed).toBe(true);
  });

  it('reports the effective window: time until the next unit refills', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 100, window: 60_000, burst: 100 }, { now: clock.read });
    const first = limiter.consume('k');
    expect(first.remaining).toBe(99);
    expect(first.window).toBeCloseTo(600, 6);
    clock.tick(250);
    const second = limiter.consume('k');
    expect(second.remaining).toBe(98);
    expect(second.window).toBeCloseTo(350, 6);
  });

  it('handles emission intervals that are not whole milliseconds exactly over many steps', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 3, window: 1000, burst: 3 }, { now: clock.read });
    for (let i = 0; i < 3; i++) expect(limiter.consume('k').allowed).toBe(true);
    expect(limiter.consume('k').allowed).toBe(false);
    for (let round = 0; round < 300; round++) {
      clock.tick(1000);
      let admitted = 0;
      for (let i = 0; i < 5; i++) if (limiter.consume('k').allowed) admitted++;
      expect(admitted).toBe(3);
    }
  });
});

describe('LruTable', () => {
  it('stays within its bound under 1M distinct keys and evicts the least recently used', () => {
    const clock = frozenClock();
    const limiter = createMemoryRateLimiter({ name: 'p', limit: 1, window: 60_000, burst: 1 }, { now: clock.read, maxKeys: 10_000 });
    const table = limiter.table;
    expect(limiter.consume('hot').allowed).toBe(true);
    let maxSize = 0;
    let hotAdmitted = 0;
    for (let i = 0; i < 1_000_000; i++) {
      limiter.consume(`key-${i}`);
      if (table.size > maxSize) maxSize = table.size;
      if (i % 1000 === 0 && limiter.consume('hot').allowed) hotAdmitted++; // kept recent: never evicted
    }
    expect(maxSize).toBe(10_000);
    expect(hotAdmitted).toBe(0);
    expect(table.size).toBe(10_000);
    expect(table.capacity).toBeLessThanOrEqual(10_000);
    expect(table.evictions).toBe(1_000_001 - 10_000);
    // An evicted key starts afresh (the documented cost of the bound); a recent one does not.
    expect(limiter.consume('key-0').allowed).toBe(true);
    expect(limiter.consume('key-999999').allowed).toBe(false);
  });

  it('moves a touched key to the front', () => {
    const table = new LruTable(3);
    for (const k of ['a', 'b', 'c']) table.insert(k);
    expect(table.find('a')).toBeGreaterThanOrEqual(0);
    table.insert('d'); // evicts b, the least recently used
    expect(table.find('b')).toBe(-1);
    expect(table.find('a')).toBeGreaterThanOrEqual(0);
    expect(table.find('c')).toBeGreaterThanOrEqual(0);
    expect(table.find('d')).toBeGreaterThanOrEqual(0);
    expect(table.size).toBe(3);
  });

  it('grows its arrays on demand up to the bound', () => {
    const table = new LruTable(5000);
    expect(table.capacity).toBe(1024);
    for (let i = 0; i < 5000; i++) table.insert(String(i));
    expect(table.capacity).toBe(5000);
    for (let i = 0; i < 5000; i++) expect(table.find(String(i))).toBeGreaterThanOrEqual(0);
  });

  it('rejects a bound that is not a positive integer', () => {
    expect(() => new LruTable(0)).toThrow(RangeError);
  });
});
