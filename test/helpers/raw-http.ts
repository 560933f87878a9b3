import net from 'node:net';

/** What came back on a raw connection: all of it (latin1), its first head, and whether the server closed it. */
export interface RawAnswer {
  readonly all: string;
  readonly head: string;
  readonly closed: boolean;
}

/**
 * Write `text` as it is on a new connection to `url`'s loopback port, and collect what comes back
 * until the server closes the connection — or `timeout` ms pass (then `closed: false`). For
 * requests no HTTP client would send (two headers of one name, `Expect: 100-continue` with a
 * body held back, a chunked body over a limit).
 *
 * @example
 * ```ts
 * const { head, closed } = await rawExchange(gw.url, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
 * ```
 */
export function rawExchange(url: string, text: string, timeout = 5000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1', () => socket.write(text));
    let all = '';
    const done = (closed: boolean) => resolve({ all, head: all.split('\r\n\r\n')[0]!, closed });
    const timer = setTimeout(() => {
      socket.removeAllListeners('close');
      socket.destroy();
      done(false);
    }, timeout);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (all += d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      done(true);
    });
  });
}
