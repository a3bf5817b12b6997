import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP relay on loopback in front of a test's server (its PostgreSQL), to play what a database
 * host does during a failover: `cut` every connection (a restart: the clients see a reset),
 * `hold` new ones (accepted, the server not reached yet), or `freeze` (the host gone without a
 * reset: connections stay open and nothing more arrives, as when a failover moves its address).
 */
export interface Relay {
  readonly port: number;
  cut(): void;
  hold(on: boolean): void;
  /** Connections accepted and held. */
  held(): number;
  freeze(): void;
  /** The address answers again, from a new host: the old connections reset, the held ones go through. */
  thaw(): void;
  close(): Promise<void>;
}

export async function relay(target: number, host = '127.0.0.1'): Promise<Relay> {
  const sockets = new Set<Socket>();
  const waiting: Socket[] = [];
  let holding = false;
  let frozen = false;
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const forward = (client: Socket): void => {
    if (client.destroyed) return;
    const upstream = connect(target, host);
    track(upstream);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  };
  const server = createServer((client) => {
    track(client);
    if (holding || frozen) waiting.push(client);
    else forward(client);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    cut: () => [...sockets].forEach((s) => s.destroy()),
    hold(on) {
      holding = on;
      if (!on && !frozen) waiting.splice(0).forEach(forward);
    },
    held: () => waiting.filter((s) => !s.destroyed).length,
    freeze() {
      frozen = true;
      // Nothing more in either direction, and no close either: the peer has simply gone quiet.
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    thaw() {
      frozen = false;
      const held = new Set(waiting);
      for (const s of sockets) if (!held.has(s)) s.destroy();
      if (!holding) waiting.splice(0).forEach(forward);
    },
    async close() {
      for (const s of sockets) s.destroy();
      for (const s of waiting.splice(0)) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
