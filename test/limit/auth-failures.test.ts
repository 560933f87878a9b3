import { describe, expect, it } from 'vitest';
import { DpopNonceRequired, InsufficientScope, InvalidDpopProof, InvalidToken, MissingToken, RequestRejected, StepUpRequired } from '../../src/errors.js';
import { AuthFailureTable, countsAsAuthFailure } from '../../src/limit/auth-failures.js';

describe('countsAsAuthFailure: a credential presented and refused, nothing else', () => {
  it('counts an invalid token, a bad DPoP proof, a bad cookie', () => {
    expect(countsAsAuthFailure(new InvalidToken('GH_ERR_JWT_SIGNATURE_INVALID', 'the access token is not valid'))).toBe(true);
    expect(countsAsAuthFailure(new InvalidToken('GH_ERR_JWT_EXPIRED', 'the access token has expired'))).toBe(true);
    expect(countsAsAuthFailure(new InvalidDpopProof('GH_ERR_DPOP_PROOF_INVALID', 'bad'))).toBe(true);
    expect(countsAsAuthFailure(new RequestRejected('GH_ERR_COOKIE_INVALID', 401, 'the session cookie is not valid'))).toBe(true);
  });

  it('does not count a missing token, a DPoP nonce challenge, step-up, scope, or a malformed header', () => {
    expect(countsAsAuthFailure(new MissingToken())).toBe(false);
    expect(countsAsAuthFailure(new DpopNonceRequired('n', 'no nonce'))).toBe(false);
    expect(countsAsAuthFailure(new StepUpRequired(['urn:mfa'], undefined))).toBe(false);
    expect(countsAsAuthFailure(new InsufficientScope(['orders:write']))).toBe(false);
    expect(countsAsAuthFailure(new RequestRejected('GH_ERR_COOKIE_CSRF_INVALID', 403, 'csrf'))).toBe(false);
  });
});

describe('AuthFailureTable', () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  it('blocks at the limit-th failure within the window, for blockFor', () => {
    const c = clock();
    const table = new AuthFailureTable({ limit: 3, window: 60_000, blockFor: 10_000 }, 100, c.now);
    expect(table.record('a')).toBe(false);
    expect(table.record('a')).toBe(false);
    expect(table.blockedFor('a')).toBe(0);
    expect(table.record('a')).toBe(true);
    expect(table.blockedFor('a')).toBe(10_000);
    expect(table.blockedFor('b')).toBe(0);
    c.advance(9_999);
    expect(table.blockedFor('a')).toBe(1);
    c.advance(1);
    expect(table.blockedFor('a')).toBe(0);
    // Counting starts afresh after a block.
    expect(table.record('a')).toBe(false);
  });

  it('forgets failures older than the window', () => {
    const c = clock();
    const table = new AuthFailureTable({ limit: 3, window: 60_000, blockFor: 10_000 }, 100, c.now);
    table.record('a');
    table.record('a');
    c.advance(60_000);
    expect(table.record('a')).toBe(false);
    expect(table.record('a')).toBe(false);
    expect(table.record('a')).toBe(true);
  });

  it('holds at most maxKeys addresses, dropping the oldest; a reload\'s numbers apply to the same entries', () => {
    const c = clock();
    const table = new AuthFailureTable({ limit: 2, window: 60_000, blockFor: 10_000 }, 2, c.now);
    table.record('a');
    table.record('b');
    table.record('c');
    expect(table.size).toBe(2);
    // 'a' was dropped: its one failure is forgotten.
    expect(table.record('a')).toBe(false);
    table.use({ limit: 1, window: 60_000, blockFor: 5_000 });
    expect(table.record('a')).toBe(true);
    expect(table.blockedFor('a')).toBe(5_000);
  });
});
