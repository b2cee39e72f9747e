import { Command, Option } from 'commander';
import { withExamples } from './help-examples.js';
import { runDial } from '../agent/dial.js';
import { requestedHostname, runForward, stableHostname } from '../agent/forward.js';
import { emptyTunnelProperties, type TunnelProperties } from '../protocol/messages.js';
import { MAX_POOL_WEIGHT, POOL_KEY, POOL_LABEL, POOL_WEIGHT_LABEL } from '../protocol/pool-labels.js';
import { resolveTarget, type TargetFlags } from './engine-target.js';
import { collect, commaList, positiveInteger } from './option-parsers.js';
import { UsageError } from '../errors.js';

/** The engine/token/CA flags every agent and API command takes (docs/cli.md#reaching-the-engine-agent-and-api-commands). */
export function withTargetOptions(command: Command): Command {
  return command
    .option('--engine <host[:port]>', 'engine address (default port 443; env RSTREAM_ENGINE)')
    .option('--token <jwt>', 'engine token (env RSTREAM_AUTHENTICATION_TOKEN)')
    .option('--token-file <path>', 'file holding the engine token')
    .option('--context <name>', 'context from the rstream config file (env RSTREAM_CONTEXT)')
    .option('--engine-tls-ca-file <pem>', 'private CA to trust for the engine (NODE_EXTRA_CA_CERTS also works)');
}


interface ForwardFlags extends TargetFlags {
  name?: string;
  publish?: boolean;
  http?: boolean;
  tls?: boolean;
  label: string[];
  pool?: string;
  poolWeight?: number;
  host?: string;
  tlsMode?: string;
  tlsAlpn?: string[];
  tlsMinVersion?: string;
  httpVersion?: string;
  upstreamTls?: boolean;
  tokenAuth?: boolean;
  trustedIps?: string[];
  retry: boolean;
  retryInterval: number;
  output: 'text' | 'json';
}

export function addAgentCommands(program: Command): void {
  addForwardCommand(program);
  addNcCommand(program);
}

function addForwardCommand(program: Command): void {
  const forward = withTargetOptions(
    program
      .command('forward')
      .argument('[target]', 'local target [host:]port', 'localhost:8080')
      .description('open a tunnel and forward its streams to a local TCP target'),
  )
    .option('--name <name>', 'tunnel name')
    .option('--publish', 'publish the tunnel (default)')
    .option('--no-publish', 'keep the tunnel private (dial it with rivulet nc)')
    .option('--http', 'published HTTP tunnel (default when published)')
    .option('--tls', 'published TLS tunnel')
    .option('--label <k=v>', 'label (repeatable)', collect, [])
    .option('--host <hostname>', 'requested hostname (published only)')
    .option('--pool <key>', 'join the endpoint pool of this key at the hostname or name (engine with tunnels.pooling.enabled)')
    .option('--pool-weight <1-100>', "this member's share of new streams in its pool", positiveInteger)
    .addOption(new Option('--tls-mode <mode>', 'TLS mode').choices(['terminated', 'passthrough']))
    .option('--tls-alpn <a,b>', 'ALPN protocols to offer (terminated TLS)', commaList)
    .addOption(new Option('--tls-min-version <v>', 'TLS floor').choices(['tls1.2', 'tls1.3']))
    .addOption(new Option('--http-version <v>', 'upstream HTTP version').choices(['http/1.1', 'h2c']))
    .option('--upstream-tls', 'speak TLS to the upstream through the tunnel')
    .option('--token-auth', 'require an engine token on every request (published HTTP)')
    .option('--trusted-ips <cidr,cidr>', 'allow only these client addresses (published)', commaList)
    .option('--retry', 'reconnect after failures worth retrying', true)
    .option('--no-retry', 'exit 1 on the first failure')
    .option('--retry-interval <ms>', 'first wait between attempts; doubles while they keep failing, up to 60 s', positiveInteger, 5000)
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (targetText: string, flags: ForwardFlags) => {
      const target = resolveTarget(flags);
      const properties = forwardProperties(flags, target.host);
      const controller = new AbortController();
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort());
      const status = await runForward({
        engine: target,
        token: target.token!,
        target: parseForwardTarget(targetText),
        properties,
        retry: flags.retry,
        retryIntervalMs: flags.retryInterval,
        output: flags.output,
        signal: controller.signal,
        print: (line) => process.stdout.write(line + '\n'),
        warn: (line) => process.stderr.write(line + '\n'),
      });
      process.exit(status);
    });
  withExamples(forward, [
    'rivulet forward 3000                          # https://<random>.t.<engine host> -> localhost:3000',
    'rivulet forward 8080 --host web --token-auth  # https://web.t.<engine host>, a token on every request',
    'rivulet forward 5432 --no-publish --name db   # private: dial it with rivulet nc db',
  ]);
}

function addNcCommand(program: Command): void {
  const nc = withTargetOptions(
    program
      .command('nc')
      .argument('<target>', 'rstrm://<name-or-id> (or just the name or id)')
      .description('dial a private tunnel: stdin to the stream, the stream to stdout'),
  )
    .option('--no-zero-rtt', 'wait for the engine to confirm the stream before sending')
    .action(async (targetText: string, flags: TargetFlags & { zeroRtt: boolean }) => {
      const target = resolveTarget(flags);
      const status = await runDial({
        engine: target,
        token: target.token!,
        target: targetText.replace(/^rstrm:\/\//, ''),
        zeroRtt: flags.zeroRtt,
        input: process.stdin,
        output: process.stdout,
        printError: (line) => process.stderr.write(line + '\n'),
      });
      process.exit(status);
    });
  withExamples(nc, ['echo PING | rivulet nc cache                 # a private tunnel named cache', 'rivulet nc rstrm://db --no-zero-rtt < dump.sql  # wait for the stream before sending']);
}

/** `port`, `host:port` or `[v6]:port`; a bare port means localhost. */
export function parseForwardTarget(text: string): { host: string; port: number } {
  const match = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) throw new UsageError(`invalid target "${text}" (expected [host:]port)`);
  return { host: match[1] ?? match[2] ?? 'localhost', port };
}

/** The OpenTunnelReq for the flags; combinations the engine would refuse are refused here (exit 2). */
export function forwardProperties(flags: ForwardFlags, engineHost: string): TunnelProperties {
  if (flags.http && flags.tls) throw new UsageError('--http and --tls are mutually exclusive');
  const publish = flags.publish !== false;
  const protocol = flags.tls ? 'tls' : flags.http || publish ? 'http' : undefined;
  const tlsOnly: Array<[string, unknown]> = [
    ['--tls-mode', flags.tlsMode],
    ['--tls-alpn', flags.tlsAlpn],
    ['--tls-min-version', flags.tlsMinVersion],
  ];
  for (const [flag, value] of tlsOnly) if (value !== undefined && protocol !== 'tls') throw new UsageError(`${flag} needs --tls`);
  if (!publish) {
    for (const [flag, value] of [['--host', flags.host], ['--token-auth', flags.tokenAuth], ['--trusted-ips', flags.trustedIps], ['--http-version', flags.httpVersion]] as const) {
      if (value !== undefined) throw new UsageError(`${flag} is not allowed on a private tunnel`);
    }
    if (flags.upstreamTls) throw new UsageError('feature not available: upstream_tls');
  }
  if (protocol === 'tls' && flags.httpVersion) throw new UsageError('--http-version is for HTTP tunnels');
  if (protocol === 'tls' && flags.tokenAuth) throw new UsageError('--token-auth is for HTTP tunnels');
  if (flags.httpVersion && flags.upstreamTls) throw new UsageError('--http-version cannot be set with --upstream-tls (ALPN decides)');
  if (flags.tlsMode === 'passthrough' && (flags.upstreamTls || flags.tlsMinVersion || flags.tlsAlpn)) {
    throw new UsageError('--tls-mode passthrough cannot be combined with --upstream-tls, --tls-min-version or --tls-alpn');
  }
  const labels: Record<string, string> = {};
  for (const label of flags.label) {
    const at = label.indexOf('=');
    if (at <= 0) throw new UsageError(`invalid --label "${label}" (expected key=value)`);
    labels[label.slice(0, at)] = label.slice(at + 1);
  }
  if (flags.pool !== undefined) {
    if (!POOL_KEY.test(flags.pool)) throw new UsageError(`invalid --pool "${flags.pool}" (1-64 characters of A-Z, a-z, 0-9, ".", "_", "-")`);
    labels[POOL_LABEL] = flags.pool;
  }
  if (flags.poolWeight !== undefined) {
    if (flags.pool === undefined) throw new UsageError('--pool-weight needs --pool');
    if (flags.poolWeight > MAX_POOL_WEIGHT) throw new UsageError(`--pool-weight must be from 1 to ${MAX_POOL_WEIGHT}`);
    labels[POOL_WEIGHT_LABEL] = String(flags.poolWeight);
  }
  const properties: TunnelProperties = { ...emptyTunnelProperties(), labels, publish };
  if (flags.name) properties.name = flags.name;
  if (protocol) properties.protocol = protocol;
  if (publish) {
    const requested = flags.host === undefined ? stableHostname(engineHost) : requestedHostname(flags.host, engineHost);
    if (typeof requested !== 'string') throw new UsageError(requested.problem);
    properties.hostname = requested;
  }
  if (flags.tlsMode) properties.tls_mode = flags.tlsMode;
  if (flags.tlsAlpn) properties.tls_alpns = flags.tlsAlpn;
  if (flags.tlsMinVersion) properties.tls_min_version = flags.tlsMinVersion;
  if (flags.httpVersion) properties.http_version = flags.httpVersion;
  if (flags.upstreamTls) properties.upstream_tls = true;
  if (flags.tokenAuth) properties.token_auth = true;
  if (flags.trustedIps) properties.trusted_ips = flags.trustedIps;
  return properties;
}
