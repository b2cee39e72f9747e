#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { addAgentCommands } from './agent-commands.js';
import { addEventsCommand } from './events-command.js';
import { addListCommands } from './list-commands.js';
import { collect, positiveInteger } from './option-parsers.js';
import type { runTokenMintCommand } from './token-command.js';
import { VERSION } from '../version.js';
import { withExamples } from './help-examples.js';
import { RivuletError, UsageError } from '../errors.js';

/**
 * The whole command tree. Each command's implementation is imported when it runs: an agent or an API
 * call need not load the engine, uWS or the certificate toolkit (half a second of CPU per start).
 */
export function buildProgram(): Command {
  const program = new Command('rivulet')
    .description('Rivulet: a self-hosted tunnel engine speaking the rstream Community Edition protocol')
    .version(VERSION, '--version')
    .exitOverride()
    .showHelpAfterError();

  withExamples(
    program
      .command('engine')
      .description('run the engine (without --config: the embedded development profile)')
      .option('-c, --config <file>', 'YAML config file (default: $RSTREAM_ENGINE_CONFIG)')
      .option('--check', 'validate the config and certificate, print "config ok" and exit')
      .action(async (options: { config?: string; check?: boolean }) => (await import('./engine-command.js')).runEngineCommand(options)),
    [
      'rivulet engine                                  # development profile: https://localhost:8443',
      'rivulet engine --check -c /etc/rivulet/engine.yaml',
      'RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET=$(cat /run/secrets/jwt) rivulet engine -c /etc/rivulet/engine.yaml',
    ],
  );

  const certs = program.command('certs').description('certificate helpers');
  const certsDev = certs
    .command('dev')
    .description('generate a local CA and a server certificate for development (never for production)')
    .requiredOption('--host <engine.host>', 'engine host; SANs <host> and *.t.<host>')
    .option('--san <name|ip>', 'extra subject alternative name (repeatable)', collect, [])
    .option('--out <dir>', 'output directory', './tls')
    .option('--days <n>', 'leaf validity in days', positiveInteger, 365)
    .option('--force', 'overwrite existing files', false)
    .action(async (options: { host: string; san: string[]; out: string; days: number; force: boolean }) =>
      (await import('./certs-command.js')).runCertsDevCommand(options),
    );
  withExamples(certsDev, ['rivulet certs dev --host localhost --out ./tls', 'rivulet certs dev --host edge.test --san 192.0.2.10 --days 30']);

  const token = program.command('token').description('engine tokens');
  const tokenMint = token
    .command('mint')
    .description('print one HS256 engine token')
    .option('--secret <s>', 'signing secret (default: $RSTREAM_ENGINE_AUTH__JWT__TOKEN_JWT_SECRET)')
    .option('--secret-file <path>', 'file holding the signing secret')
    .option('--sub <id>', 'subject (sets sub and userId)', 'rivulet')
    .option('--ttl <duration>', 'lifetime: 90s, 15m, 24h, 30d, or 0 for no expiry', '1h')
    .option('--permissions <list>', 'comma-separated engine permissions (default: full access)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (options: Parameters<typeof runTokenMintCommand>[0]) => (await import('./token-command.js')).runTokenMintCommand(options));
  withExamples(tokenMint, [
    'rivulet token mint --secret-file .rivulet/dev/jwt-secret',
    'rivulet token mint --secret-file /etc/rivulet/jwt-secret --sub ci --ttl 30d --permissions tunnels.resources.read-only',
  ]);

  addAgentCommands(program);
  addListCommands(program);
  addEventsCommand(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every other parse problem is a usage error (exit 2).
      process.exit(error.exitCode === 0 ? 0 : 2);
    }
    if (error instanceof RivuletError) {
      process.stderr.write(error instanceof UsageError ? `error: ${error.message}\n` : `${error.message}\n`);
      process.exit(error.exitStatus);
    }
    throw error;
  }
}

await main();
