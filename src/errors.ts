/**
 * Rivulet's error vocabulary (docs/errors.md). Every failure that crosses a module boundary on its way to
 * an operator, a user or a calling program is one of these classes: each has a stable `code`, and the
 * CLI's exit status follows from the code. Messages are for people and may change; codes do not.
 * Errors of the rstrm/1 protocol itself travel as RstrmError values with their numeric wire codes
 * (protocol/messages.ts), never as exceptions.
 */

export const ERROR_CODES = {
  /** The configuration is invalid; one line per problem, each naming its key. */
  RIVULET_CONFIG: { exit: 1 },
  /** The certificate pair cannot be used; the message names the key and the file. */
  RIVULET_CERTIFICATE: { exit: 1 },
  /** A listener could not bind; the message names the key, the address and the errno code. */
  RIVULET_LISTEN: { exit: 1 },
  /** A data-plane worker could not bind its TLS port or its affinity port (becomes RIVULET_LISTEN). */
  RIVULET_WORKER_LISTEN: { exit: 1 },
  /** The command line is wrong (unknown flag, missing argument, bad value). */
  RIVULET_USAGE: { exit: 2 },
  /** A command cannot run as configured (no engine address, no token, the engine unreachable). */
  RIVULET_COMMAND: { exit: 1 },
  /** `rivulet certs dev` would overwrite existing files without --force. */
  RIVULET_FILES_EXIST: { exit: 1 },
  /** The engine refused a request of the agent or dialer; `rstrm` holds the wire error. */
  RIVULET_ENGINE_REFUSED: { exit: 1 },
  /** An rstrm/1 frame is malformed or too large; the connection it came on is closed. */
  RIVULET_FRAME: { exit: 1 },
  /** An rstrm/1 message body does not decode. */
  RIVULET_DECODE: { exit: 1 },
  /** An Engine API query parameter is invalid (answered 400). */
  RIVULET_API_PARAMS: { exit: 1 },
  /** A stream to an agent could not be set up; `reason` says why, `rstrm` what a dialer is told. */
  RIVULET_STREAM: { exit: 1 },
} as const satisfies Record<string, { exit: number }>;

export type RivuletErrorCode = keyof typeof ERROR_CODES;

/** The wire error an rstrm/1 peer sent or is sent (structurally protocol/messages.ts's RstrmError). */
export interface WireError {
  code: number;
  message?: string | undefined;
}

export class RivuletError extends Error {
  constructor(
    readonly code: RivuletErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The status `rivulet` exits with when this error ends a command. */
  get exitStatus(): number {
    return ERROR_CODES[this.code].exit;
  }
}

export class ConfigError extends RivuletError {
  constructor(readonly lines: string[]) {
    super('RIVULET_CONFIG', lines.join('\n'));
  }
}

export class CertificateError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_CERTIFICATE', message);
  }
}

/** `listen error: <key> "<address>": <errno code>`. */
export class ListenError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_LISTEN', message);
  }
}

export class WorkerListenFailure extends RivuletError {
  constructor(
    readonly listener: 'tls' | 'affinity',
    readonly port: number,
    readonly errno: string,
  ) {
    super('RIVULET_WORKER_LISTEN', `worker could not listen on its ${listener} port ${port}: ${errno}`);
  }
}

export class UsageError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_USAGE', message);
  }
}

export class CommandError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_COMMAND', message);
  }
}

export class FilesExistError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_FILES_EXIST', message);
  }
}

export class EngineRefusal extends RivuletError {
  constructor(readonly rstrm: WireError) {
    super('RIVULET_ENGINE_REFUSED', rstrm.message ?? `error ${rstrm.code}`);
  }
}

export class FrameError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_FRAME', message);
  }
}

export class DecodeError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_DECODE', message);
  }
}

export class ParamsError extends RivuletError {
  constructor(message: string) {
    super('RIVULET_API_PARAMS', message);
  }
}

/**
 * Why a stream could not be set up. `adopted` is not a failure of the stream, which now serves the pool
 * of the worker it landed on.
 */
export type StreamFailureReason = 'refused' | 'timeout' | 'owner_gone' | 'capacity' | 'cancelled' | 'adopted';

export class StreamFailure extends RivuletError {
  constructor(
    readonly reason: StreamFailureReason,
    /** The rstrm/1 error code a private dial reports. */
    readonly rstrmCode: number,
    message: string,
  ) {
    super('RIVULET_STREAM', message);
  }
}
