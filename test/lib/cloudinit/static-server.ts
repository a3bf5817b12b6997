/**
 * The test's HTTP server, a process of its own started inside the test's network namespace:
 * `node static-server.js ROOT ADDRESS PORT [CERT KEY]`. Serves files under ROOT read-only (GET and
 * HEAD), jailed to ROOT, and prints one JSON line per request on stdout so the test can check
 * what apt really fetched. With a certificate and key it speaks HTTPS (the load balancer test's
 * stand-in API servers, which haproxy health-checks over TLS). Prints `listening` once it accepts
 * connections.
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { resolve, sep } from 'node:path';

const [root, address, port, cert, key] = process.argv.slice(2);
if (!root || !address || !port) {
  process.stderr.write('usage: static-server ROOT ADDRESS PORT [CERT KEY]\n');
  process.exit(2);
}
const base = resolve(root);

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://mirror');
  let path: string;
  try {
    // apt may percent-encode the colons of pkgs.k8s.io's `/core:/stable:/v1.30/deb/`.
    path = decodeURIComponent(url.pathname);
  } catch {
    path = '\0';
  }
  const file = resolve(base, '.' + path);
  let status = 404;
  let size = 0;
  if (req.method !== 'GET' && req.method !== 'HEAD') status = 405;
  else if (!path.includes('\0') && (file === base || file.startsWith(base + sep))) {
    try {
      const st = statSync(file);
      if (st.isFile()) {
        status = 200;
        size = st.size;
      }
    } catch {
      /* not there */
    }
  }
  process.stdout.write(JSON.stringify({ method: req.method, path, status, from: req.socket.remoteAddress }) + '\n');
  if (status !== 200) {
    res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 404 ? 'not found\n' : 'method not allowed\n');
    return;
  }
  res.writeHead(200, { 'content-length': String(size), 'content-type': 'application/octet-stream' });
  if (req.method === 'HEAD') res.end();
  else createReadStream(file).pipe(res);
}

const server = cert && key ? createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, handle) : createServer(handle);
server.listen(Number(port), address, () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
