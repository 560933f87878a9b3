import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

/**
 * A running certificate watcher.
 *
 * @example
 * ```ts
 * const watcher: CertificateWatcher = watchCertificateFiles([certFile, keyFile], reload, { debounce: 250 });
 * server.on('close', () => watcher.close());
 * ```
 */
export interface CertificateWatcher {
  close(): void;
}

/**
 * Watch certificate and key files and call `onChange` once the writes have settled
 * (`debounce` ms after the last event). The parent directories are watched rather than the
 * files: editors, `certbot` and Kubernetes secret mounts replace files by rename or swap a
 * `..data` symlink, which a watch on the old inode never sees. Any event in those directories
 * schedules a check; `onChange` decides whether the content really changed.
 *
 * @example
 * ```ts
 * const watcher = watchCertificateFiles(['/etc/gatehouse/cert.pem', '/etc/gatehouse/key.pem'], () => void reload(), { debounce: 250 });
 * // later
 * watcher.close();
 * ```
 */
export function watchCertificateFiles(files: readonly string[], onChange: () => void, options: { debounce: number; onError?: (err: Error) => void }): CertificateWatcher {
  const dirs = new Set(files.map((f) => path.dirname(path.resolve(f))));
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, options.debounce);
    timer.unref();
  };
  const fire = () => {
    timer = null;
    if (!closed) onChange();
  };
  for (const dir of dirs) {
    try {
      const w = watch(dir, { persistent: false }, schedule);
      w.on('error', (err) => options.onError?.(err));
      watchers.push(w);
    } catch (err) {
      options.onError?.(err as Error);
    }
  }
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
