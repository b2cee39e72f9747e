import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

/**
 * One hop of the "plain Node" reference relay (the Node ceiling): TLS in, piped to the next hop,
 * which is TLS (`--to-tls`) or plain TCP. Two of these in a row carry what a published tunnel carries
 * (client ⇄ TLS ⇄ engine ⇄ TLS ⇄ agent ⇄ TCP ⇄ upstream) with nothing else. Prints `{"port":…}`.
 * Usage: node dist/bench/tls-relay.js <cert.pem> <key.pem> <host:port> [--to-tls]
 */
const [certFile, keyFile, target, toTls] = process.argv.slice(2);
const [host, port] = target!.split(':') as [string, string];
const server = tls.createServer({ cert: fs.readFileSync(certFile!), key: fs.readFileSync(keyFile!) }, (downstream) => {
  const upstream = toTls === '--to-tls' ? tls.connect({ host, port: Number(port), rejectUnauthorized: false }) : net.connect(Number(port), host);
  downstream.setNoDelay(true);
  upstream.setNoDelay(true);
  downstream.pipe(upstream);
  upstream.pipe(downstream);
  const close = (): void => {
    downstream.destroy();
    upstream.destroy();
  };
  downstream.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`));
process.on('SIGTERM', () => process.exit(0));
