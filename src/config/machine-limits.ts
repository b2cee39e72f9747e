import fs from 'node:fs';
import os from 'node:os';

/** What an accepted connection costs at most in engine memory (TLS state, buffers, HTTP state), rounded up. */
const BYTES_PER_CONNECTION = 64 * 1024;
/** Share of the machine's memory the default connection limit may spend on connections. */
const MEMORY_SHARE = 0.25;

/**
 * The default for `dataplane.max_connections`: what this machine can hold without running out of
 * descriptors or memory. Every connection the limit counts (visitor, agent control channel, proxy
 * connection, private dial) holds one descriptor; a quarter of the descriptors, at most 1,024, stay
 * free for everything else (the API socket, certificate reads, upstream dials of the embedded agent).
 */
export function machineConnectionLimit(): number {
  const descriptors = openFileLimit();
  const byDescriptors = descriptors - Math.min(1024, Math.floor(descriptors / 4));
  const byMemory = Math.floor((os.totalmem() * MEMORY_SHARE) / BYTES_PER_CONNECTION);
  return Math.max(1, Math.min(byDescriptors, byMemory));
}

/** The process's soft RLIMIT_NOFILE (Node raises it to the hard limit at startup); 1,024 where unknown. */
function openFileLimit(): number {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((row) => row.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(soft) || 1024;
  } catch {
    return 1024;
  }
}
