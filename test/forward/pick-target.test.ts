import { describe, expect, it } from 'vitest';
import { pickTarget, type Upstream, type UpstreamTarget } from '../../src/forward/upstream.js';

/** An upstream's targets alone (the pools are never used by the pick). */
function upstreamOf(weights: number[]): Upstream {
  const targets = weights.map((weight, index) => ({ index, url: String.fromCharCode(97 + index), weight, current: 0, origin: '', pool: null, downUntil: 0, failing: false }) as unknown as UpstreamTarget);
  return { targets, cursor: 0, weighted: weights.some((w) => w !== 1) } as unknown as Upstream;
}

const picks = (upstream: Upstream, count: number, now = 1000) => Array.from({ length: count }, () => pickTarget(upstream, 0, now)?.url ?? '-').join('');

describe('pickTarget with weights (smooth weighted round robin)', () => {
  it('5 : 1 : 1 gives a a b a c a a in every cycle of seven (nginx\'s sequence)', () => {
    expect(picks(upstreamOf([5, 1, 1]), 14)).toBe('aabacaaaabacaa');
  });

  it('never picks a drained target (weight 0), also when it is the only one up; a retry skips what was tried', () => {
    const upstream = upstreamOf([2, 0, 1]);
    expect(picks(upstream, 6)).not.toContain('b');
    upstream.targets[0]!.downUntil = 5000;
    upstream.targets[2]!.downUntil = 5000;
    // Every weighted target out: a first try still goes to one of them (round robin), never to b.
    expect(picks(upstream, 4)).toMatch(/^[ac]{4}$/);
    upstream.targets[0]!.downUntil = 0;
    upstream.targets[2]!.downUntil = 0;
    expect(pickTarget(upstream, 0b001, 1000)?.url).toBe('c');
    expect(pickTarget(upstream, 0b101, 1000)).toBeNull();
  });

  it('a target left out gives its share to the others until it is back', () => {
    const upstream = upstreamOf([3, 1]);
    upstream.targets[0]!.downUntil = 2000;
    expect(picks(upstream, 4, 1000)).toBe('bbbb');
    expect(picks(upstream, 8, 3000).split('').filter((t) => t === 'a')).toHaveLength(6);
  });

  it('equal weights are the plain round robin', () => {
    expect(picks(upstreamOf([1, 1, 1]), 6)).toBe('abcabc');
  });
});
