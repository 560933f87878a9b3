// What bench/run.js and bench/ab.js share: finding tools, the nginx upstream, free ports, a
// process's CPU time.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

/** The path of a command on PATH, or null. */
export function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** nginx (Debian: nginx-light), which is in /usr/sbin, often not on a user's PATH; or null. */
export function nginxPath() {
  return which('nginx') ?? (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null);
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** utime + stime of a process so far (all its threads), in µs, from /proc/PID/stat. */
export function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** The upstream's answer: a ~100-byte JSON body, like a small API response. */
export const UPSTREAM_BODY = '{"ok":true,"service":"bench-upstream","message":"a small answer of about one hundred bytes."}\n';

/**
 * Write an nginx config under `prefix` (one process, no daemon, access log off, keep-alive for
 * as long as a bench runs) that answers every request on 127.0.0.1:`port` with UPSTREAM_BODY.
 * Returns the arguments to start nginx with.
 *
 * @example
 * const args = writeNginxConfig('/tmp/x/nginx', 8081); // spawn('nginx', args)
 */
export function writeNginxConfig(prefix, port) {
  mkdirSync(path.join(prefix, 'tmp'), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 65s;
  server {
    listen 127.0.0.1:${port};
    location / {
      default_type application/json;
      return 200 '${UPSTREAM_BODY.trim()}\\n';
    }
  }
}
`,
  );
  return ['-p', prefix, '-c', conf, '-e', path.join(prefix, 'error.log')];
}
