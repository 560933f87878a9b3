import { describe, expect, it } from 'vitest';
import type { Worker } from 'node:cluster';
import { askWorker, sendToWorker } from '../../src/server/cluster-ipc.js';

/** Just enough of a cluster worker for the primary's side of the IPC. */
function fakeWorker(connected: boolean, send: (message: unknown) => void): Worker {
  return { isConnected: () => connected, send } as unknown as Worker;
}

describe("the primary's messages to its workers", () => {
  it('sends to a connected worker, and reports false instead of throwing or sending when it cannot', () => {
    const sent: unknown[] = [];
    expect(sendToWorker(fakeWorker(true, (m) => sent.push(m)), 'gatehouse:reload')).toBe(true);
    expect(sent).toEqual(['gatehouse:reload']);
    // Disconnected: nothing is sent (a send on a closed channel emits an error later).
    expect(sendToWorker(fakeWorker(false, (m) => sent.push(m)), 'gatehouse:reload')).toBe(false);
    expect(sent).toHaveLength(1);
    // Closed in between the check and the send.
    const closing = fakeWorker(true, () => {
      throw new Error('Channel closed');
    });
    expect(sendToWorker(closing, 'gatehouse:reload')).toBe(false);
  });

  it('settles a question to a worker that cannot be asked at once, not after its timeout', async () => {
    const sent: unknown[] = [];
    // A timeout no test would wait for: the answer must come without it.
    const reply = await askWorker(fakeWorker(false, (m) => sent.push(m)), 'gatehouse:test-ask', 'gatehouse:test-answer', 3_600_000);
    expect(reply).toBeNull();
    expect(sent).toEqual([]);
    const started = askWorker(fakeWorker(true, (m) => sent.push(m)), 'gatehouse:test-ask', 'gatehouse:test-answer', 20);
    expect(sent).toEqual([{ type: 'gatehouse:test-ask', id: expect.any(Number) }]);
    // A connected worker that never answers: null once the timeout passes.
    expect(await started).toBeNull();
  });
});
