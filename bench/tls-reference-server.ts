import fs from 'node:fs';
import tls from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The reference for the handshake bench: a plain Node TLS server in one worker thread, same
 * certificate and ALPN, that closes each connection once the handshake is done — what Rivulet's
 * refusing agent class does, minus the ClientHello peek and dispatch.
 */
const { cert, key } = workerData as { cert: string; key: string };
const server = tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['rstrm/1'] }, (socket) => {
  socket.on('error', () => {});
  socket.end();
});
server.listen(0, '127.0.0.1', () => parentPort!.postMessage((server.address() as { port: number }).port));
parentPort!.on('message', () => server.close(() => process.exit(0)));
