import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { CommandError, UsageError } from '../errors.js';

/** Where and how an agent or API command reaches the engine (docs/cli.md#reaching-the-engine-agent-and-api-commands). */
export interface EngineTarget {
  host: string;
  port: number;
  token: string | undefined;
  /** PEM of a private CA to trust in addition to the system roots. */
  caPem: string | undefined;
}

export interface TargetFlags {
  engine?: string;
  token?: string;
  tokenFile?: string;
  context?: string;
  engineTlsCaFile?: string;
}

interface ContextFile {
  defaults?: { context?: { name?: string } };
  contexts?: Array<{
    name?: string;
    engine?: string;
    engineTlsCaFile?: string;
    auth?: { token?: { storage?: { kind?: string; value?: string } } };
  }>;
}

/** Flag > env > context file, for the engine address, the token and the CA. */
export function resolveTarget(flags: TargetFlags, env: NodeJS.ProcessEnv = process.env, requireToken = true): EngineTarget {
  const context = loadContext(flags.context ?? env.RSTREAM_CONTEXT, env);
  const engine = flags.engine ?? env.RSTREAM_ENGINE ?? context?.engine;
  if (!engine) throw new CommandError('engine is required but not configured (use --engine, RSTREAM_ENGINE or a context)');
  const { host, port } = parseEngineAddress(engine);
  let token = flags.token;
  if (token === undefined && flags.tokenFile !== undefined) token = readTrimmed(flags.tokenFile, '--token-file');
  token ??= env.RSTREAM_AUTHENTICATION_TOKEN;
  if (token === undefined && context?.auth?.token?.storage?.kind === 'inline') token = context.auth.token.storage.value;
  if (requireToken && !token) {
    throw new CommandError('missing authentication token (use --token, RSTREAM_AUTHENTICATION_TOKEN or a context)');
  }
  const caFile = flags.engineTlsCaFile ?? context?.engineTlsCaFile;
  return { host, port, token, caPem: caFile === undefined ? undefined : readTrimmed(caFile, '--engine-tls-ca-file') };
}

/** `host[:port]`, IPv6 in brackets; the port defaults to 443. */
export function parseEngineAddress(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? 443 : Number(match[3]);
  if (!host || port < 1 || port > 65535 || (match?.[1] !== undefined && !net.isIPv6(host))) {
    throw new UsageError(`invalid engine address "${text}" (expected host[:port])`);
  }
  return { host, port };
}

function loadContext(name: string | undefined, env: NodeJS.ProcessEnv): NonNullable<ContextFile['contexts']>[number] | undefined {
  const file = env.RSTREAM_CONFIG ?? path.join(os.homedir(), '.rstream', 'config.yaml');
  let parsed: ContextFile;
  try {
    parsed = (YAML.parse(fs.readFileSync(file, 'utf8')) ?? {}) as ContextFile;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && name === undefined) return undefined;
    throw new UsageError(`cannot read context file ${file}: ${(error as Error).message.split('\n')[0]}`);
  }
  const wanted = name ?? parsed.defaults?.context?.name;
  if (wanted === undefined) return undefined;
  const context = parsed.contexts?.find((candidate) => candidate.name === wanted);
  if (!context) throw new UsageError(`context "${wanted}" not found in ${file}`);
  return context;
}

function readTrimmed(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (error) {
    throw new UsageError(`cannot read ${flag} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
