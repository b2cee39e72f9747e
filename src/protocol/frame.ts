import { decodeMessage, encodeMessage, type Message } from './messages.js';
import { FrameError } from '../errors.js';

/**
 * rstrm/1 framing (docs/protocol.md#transport-and-framing): a 4-byte big-endian length, then that many bytes of `Message`.
 * 1 ≤ length ≤ 65535; anything else is fatal for the connection. Shared by engine and agent.
 */
export const MAX_FRAME_LENGTH = 65535;
const HEADER = 4;

/** Header and body in one buffer, so one write puts the whole frame on the socket. */
export function encodeFrame(message: Message): Buffer {
  const body = encodeMessage(message);
  if (body.length > MAX_FRAME_LENGTH) throw new FrameError(`frame of ${body.length} bytes exceeds ${MAX_FRAME_LENGTH}`);
  const frame = Buffer.allocUnsafe(HEADER + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, HEADER);
  return frame;
}

/**
 * Incremental decoder: push bytes as they arrive, take whole messages out. Holds at most one
 * incomplete frame (≤ 65539 bytes) plus what arrived with it.
 */
export class FrameDecoder {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
  }

  /** The next whole message, or undefined until more bytes arrive. Throws FrameError or DecodeError. */
  next(): Message | undefined {
    if (this.buffered.length < HEADER) return undefined;
    const length = this.buffered.readUInt32BE(0);
    if (length === 0 || length > MAX_FRAME_LENGTH) throw new FrameError(`frame length ${length} out of range`);
    if (this.buffered.length < HEADER + length) return undefined;
    const body = this.buffered.subarray(HEADER, HEADER + length);
    this.buffered = this.buffered.subarray(HEADER + length);
    return decodeMessage(body);
  }

  /** Bytes received after the last message taken: payload on proxy and dial connections. */
  takeRemainder(): Buffer {
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }
}
