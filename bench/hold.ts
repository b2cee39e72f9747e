import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

/**
 * Idle connections for the memory scenario, in its own process.
 *   server <cert> <key>                 – upstreams that accept connections and hold them: plain TCP
 *                                         and TLS; prints {"tcp":…,"tls":…}.
 *   clients <port> <servername> <count> – opens `count` TLS connections to the engine (64 at a time),
 *                                         prints {"open":count} when all are up, holds until SIGTERM.
 */
const [role, ...args] = process.argv.slice(2);
const held: net.Socket[] = [];

if (role === 'server') {
  const [certFile, keyFile] = args as [string, string];
  const hold = (socket: net.Socket): void => {
    socket.on('error', () => socket.destroy());
    held.push(socket);
  };
  const plain = net.createServer(hold);
  const secure = tls.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, hold);
  const listen = (server: net.Server): Promise<number> => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
  process.stdout.write(`${JSON.stringify({ tcp: await listen(plain), tls: await listen(secure) })}\n`);
} else {
  const [port, servername, count] = args as [string, string, string];
  let next = 0;
  const open = async (): Promise<void> => {
    while (next < Number(count)) {
      next++;
      await new Promise<void>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername, rejectUnauthorized: false }, () => resolve());
        socket.once('error', reject);
        held.push(socket);
      });
    }
  };
  await Promise.all(Array.from({ length: 64 }, open));
  process.stdout.write(`${JSON.stringify({ open: held.length })}\n`);
}
process.on('SIGTERM', () => process.exit(0));
