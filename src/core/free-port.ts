import { createServer } from 'node:net';

/** Asks the kernel for a currently free TCP port on `host` (never assumes 5432 or 2379 are free). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

/** `count` distinct free ports. */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const seen = new Set<number>();
  while (seen.size < count) seen.add(await freePort(host));
  return [...seen];
}

/** True when something accepts connections on host:port — used to name a port that is in use. */
export function isPortInUse(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(true));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(false)));
  });
}
