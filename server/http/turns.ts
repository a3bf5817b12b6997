import type { Server } from 'node:http';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';

/**
 * Requests take turns with new connections. libuv (1.45 on, so Node 20) accepts at most one
 * connection each time the event loop polls. A turn that starts every request that has arrived
 * (64 busy keep-alive clients at 0.4 ms each) lasts 25 ms, so a burst of new connections waits
 * in the kernel's accept queue for one such turn each: a second for the 40th (docs/artifacts.md).
 * Requests therefore wait in arrival order; in a turn that accepted a connection (more may be
 * waiting behind it) at most `whileAccepting` of them start, otherwise all.
 */
export function takingTurns(server: Server, handler: RequestListener, whileAccepting: number): { waiting(): number } {
  let queue: [IncomingMessage, ServerResponse][] = [];
  let scheduled = false;
  let accepted = false;

  function run(): void {
    const limit = accepted ? whileAccepting : Number.POSITIVE_INFINITY;
    accepted = false;
    const now = queue.length > limit ? queue.splice(0, limit) : queue;
    if (now === queue) queue = [];
    if (queue.length > 0) setImmediate(run);
    else scheduled = false;
    for (const [req, res] of now) handler(req, res);
  }

  server.on('connection', () => {
    accepted = true;
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    queue.push([req, res]);
    if (scheduled) return;
    scheduled = true;
    setImmediate(run);
  });
  return { waiting: () => queue.length };
}
