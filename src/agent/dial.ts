import type { Readable, Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { FrameDecoder, encodeFrame } from '../protocol/frame.js';
import type { MessageOf } from '../protocol/messages.js';
import { clientDetails } from './control-client.js';
import { connectEngine, type EngineEndpoint } from './engine-connection.js';

export interface DialOptions {
  engine: EngineEndpoint;
  token: string;
  /** Tunnel id or name. */
  target: string;
  zeroRtt: boolean;
  input: Readable;
  output: Writable;
  printError: (line: string) => void;
}

/**
 * `rivulet nc`: a private dial (docs/protocol.md#a-private-dial). Input goes to the stream and the stream to output,
 * with half-close: the end of input ends our write side and we keep reading until the remote ends.
 * Resolves with the exit status.
 */
export async function runDial(options: DialOptions): Promise<number> {
  let socket: TLSSocket;
  try {
    socket = await connectEngine(options.engine);
  } catch (error) {
    options.printError(`dial failed: ${(error as Error).message}`);
    return 1;
  }
  socket.write(
    encodeFrame({
      type: 'stream_req',
      client_details: clientDetails(options.token),
      tunnel_id_name: options.target,
      zero_rtt: options.zeroRtt,
    }),
  );
  if (!options.zeroRtt) {
    const refusal = await streamRefusal(socket);
    if (refusal !== undefined) {
      options.printError(`dial failed: ${refusal}`);
      socket.destroy();
      return 1;
    }
  }
  return relay(socket, options);
}

/** Waits for the StreamRsp: why the stream was refused, or undefined once it is open. */
async function streamRefusal(socket: TLSSocket): Promise<string | undefined> {
  const decoder = new FrameDecoder();
  const reply = await readStreamRsp(socket, decoder);
  if (reply instanceof Error) return reply.message;
  if ('error' in reply.result) return `${reply.result.error.message ?? 'error'} (code ${reply.result.error.code})`;
  // Bytes the remote sent right after the StreamRsp are the stream's first.
  const early = decoder.takeRemainder();
  if (early.length > 0) socket.unshift(early);
  return undefined;
}

function readStreamRsp(socket: TLSSocket, decoder: FrameDecoder): Promise<MessageOf<'stream_rsp'> | Error> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      decoder.push(chunk);
      try {
        const message = decoder.next();
        if (!message) return;
        socket.off('data', onData);
        socket.pause();
        resolve(message.type === 'stream_rsp' ? message : new Error(`unexpected ${message.type}`));
      } catch (error) {
        resolve(error as Error);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => resolve(new Error('engine closed the connection')));
  });
}

/** Copies input to the stream and the stream to output until the stream closes; resolves with the exit status. */
function relay(socket: TLSSocket, options: DialOptions): Promise<number> {
  return new Promise((resolve) => {
    let status = 0;
    let received = 0;
    // The reader went away (`rivulet nc … | head`): that ends the dial, quietly, as it ends cat.
    options.output.once('error', () => {
      socket.destroy();
      resolve(0);
    });
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.pipe(options.output, { end: false });
    options.input.pipe(socket); // the end of input half-closes the stream
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset instead of an end: with zero-RTT, before any byte, that is how the engine refuses a dial.
      status = 1;
      options.printError(
        received === 0 && options.zeroRtt
          ? `dial failed: the engine refused the stream (${error.code ?? error.message}); rerun with --no-zero-rtt to see why`
          : `dial failed: the stream was cut (${error.code ?? error.message})`,
      );
      socket.destroy();
    });
    socket.once('end', () => {
      options.input.unpipe(socket);
      socket.destroy();
    });
    socket.once('close', () => resolve(status));
  });
}
