import net from 'node:net';

/**
 * With `reuse-port`, a second engine on the same port would bind too (SO_REUSEPORT lets every socket of
 * the same user share it) and take half the connections. The engine therefore first claims the address:
 * an abstract Unix socket named after it (Linux; no file, gone with the process) that only one process can
 * hold. Close the returned server to give the claim up.
 */
export async function claimAddress(host: string, port: number): Promise<net.Server> {
  const claim = net.createServer();
  await new Promise<void>((resolve, reject) => {
    claim.once('error', () =>
      reject(Object.assign(new Error(`${host}:${port} is held by another Rivulet engine (EADDRINUSE)`), { code: 'EADDRINUSE' })),
    );
    claim.listen(`\0rivulet-tls-listener-${host}-${port}`, () => resolve());
  });
  return claim;
}
