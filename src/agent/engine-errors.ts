import { ErrorCode } from '../protocol/messages.js';
import { EngineRefusal } from '../errors.js';

/** What a failure to reach or use the engine means for the operator. */
export interface Diagnosis {
  /** One line: what happened and, when the operator must act, what to do. */
  message: string;
  /** Retrying cannot help (a bad token, an untrusted certificate, a wrong address): stop and say so. */
  permanent: boolean;
}

const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_UNTRUSTED',
]);

/** Codes an engine sends while it is restarting or full: the same request may pass later. */
const TRANSIENT_REFUSALS = new Set<number>([ErrorCode.ServiceUnavailable, ErrorCode.CapacityExhausted, ErrorCode.Internal]);

/** Classifies an error from connecting to the engine, opening a control channel, a tunnel or a dial. */
export function diagnose(error: unknown, engine: { host: string; port: number }): Diagnosis {
  const address = `${engine.host}:${engine.port}`;
  if (error instanceof EngineRefusal) return diagnoseRefusal(error);
  const { code, message } = error as NodeJS.ErrnoException;
  if (code && UNTRUSTED_CERTIFICATE.has(code)) {
    return {
      permanent: true,
      message: `cannot verify the engine's certificate (${message}): pass --engine-tls-ca-file <ca.pem> or set NODE_EXTRA_CA_CERTS to the CA that signed it`,
    };
  }
  if (code === 'CERT_HAS_EXPIRED') return { permanent: true, message: `the engine's certificate has expired: renew it on the engine (${message})` };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { permanent: true, message: `the engine's certificate does not cover "${engine.host}": use the engine's own host name in --engine (${message})` };
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|packet length too long/.test(message ?? '')) {
    return { permanent: true, message: `${address} does not speak TLS: use the engine's TLS port (tls.listen_addr), not its plain-HTTP one` };
  }
  if (code === 'ENOTFOUND') return { permanent: true, message: `cannot resolve the engine host "${engine.host}": check --engine or RSTREAM_ENGINE` };
  if (/did not negotiate rstrm\/1/.test(message ?? '')) {
    return { permanent: true, message: `${address} is not an engine's agent port (${message}): check --engine or RSTREAM_ENGINE` };
  }
  return { permanent: false, message: message ?? String(error) };
}

function diagnoseRefusal(refusal: EngineRefusal): Diagnosis {
  const { code } = refusal.rstrm;
  const text = `${refusal.message} (code ${code})`;
  if (code === ErrorCode.Unauthorized) {
    return { permanent: true, message: `${text}: the engine refused the token; mint a new one for this engine (rivulet token mint) with the permissions it needs` };
  }
  // The old tunnel of a restarted agent may still hold the name until the engine sees its channel die.
  if (code === ErrorCode.InvalidRequest && /already used by another live tunnel/.test(refusal.message)) return { permanent: false, message: text };
  return { permanent: !TRANSIENT_REFUSALS.has(code), message: text };
}
