/**
 * Binding a server to its port, with a one-line answer when the port is
 * taken: the usual cause is a second copy of the same app, and the fix is
 * to stop it or choose another port, not to read a stack trace.
 */
import type { Server } from 'node:http';

export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    /** The setting that chooses the port, e.g. `HEALTH_PORT`. */
    readonly setting: string,
  ) {
    super(`port ${port} is already in use (another copy running?); stop it or set ${setting} to a free port`);
    this.name = 'PortInUseError';
  }
}

/** Listens on `port` (0: a free one); rejects with PortInUseError when it is taken. */
export function listenOn(server: Server, port: number, host: string | undefined, setting: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(error.code === 'EADDRINUSE' ? new PortInUseError(port, setting) : error);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
