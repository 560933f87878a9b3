import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfigFile } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/telemetry/log.js';

export interface TestGateway {
  url: string;
  urls: Record<string, string>;
  adminUrl: string | null;
  /** Every log line the gateway wrote, parsed. */
  logs: Record<string, any>[];
  gateway: Gateway;
  /** The config file (a temp file) the gateway was started from. */
  file: string;
  /** Write a new config to the file and reload (rejects when it is broken; the old plan stays). */
  reload(yamlText: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Start an in-process gateway from YAML text (written to a temp file, so relative paths and
 * reload work as in production). Use `port: 0` for listeners and admin.
 */
export async function startTestGateway(
  yamlText: string,
  options: { env?: NodeJS.ProcessEnv; dir?: string; watch?: boolean } = {},
): Promise<TestGateway> {
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'gatehouse-test-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, yamlText);
  const env = { ...process.env, ...options.env };
  const logs: Record<string, any>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim() !== '') {
          try {
            logs.push(JSON.parse(line));
          } catch {
            logs.push({ raw: line });
          }
        }
      }
      cb();
    },
  });
  const config = loadConfigFile(file, env);
  const log = createLogger({ level: config.log.level === 'info' ? 'debug' : config.log.level, destination: sink as never });
  const gateway = await startGateway({ config, log, watchConfig: options.watch ?? false, env });
  return {
    url: gateway.url,
    urls: gateway.urls,
    adminUrl: gateway.adminUrl,
    logs,
    gateway,
    file,
    async reload(text: string) {
      writeFileSync(file, text);
      await gateway.reload(loadConfigFile(file, env));
    },
    close: () => gateway.close(),
  };
}

/**
 * The access-log line of the answer with this request id (written when the response closes, so
 * it may come a moment after the client has the answer).
 */
export async function accessLine(logs: Record<string, any>[], requestId: unknown): Promise<Record<string, any>> {
  for (let i = 0; i < 200; i++) {
    const line = logs.find((l) => l.msg === 'request' && l.req_id === requestId);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no access-log line for ${String(requestId)}`);
}
