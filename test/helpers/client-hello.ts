import net from 'node:net';
import tls from 'node:tls';

/** Captures the bytes a real Node TLS client sends first (its ClientHello) for the given options. */
export async function captureClientHello(options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const received = new Promise<Buffer>((resolve) => {
      server.once('connection', (socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        // A complete hello fits in a few hundred bytes; give the client a moment to send it all.
        setTimeout(() => {
          socket.destroy();
          resolve(Buffer.concat(chunks));
        }, 100);
      });
    });
    const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    client.on('error', () => {});
    const bytes = await received;
    client.destroy();
    return bytes;
  } finally {
    server.close();
  }
}
