import path from 'node:path';
import { buildConfig, readConfigFile, type LoadedConfig } from '../config/load.js';
import { prepareDevProfile, DEV_DIRECTORY, type DevProfile } from '../config/dev-profile.js';
import { loadCertificatePair } from '../certs/certificate-pair.js';
import type { RunningEngine } from '../engine.js';
import { createLogger, type Logger } from '../log.js';
import { RivuletError } from '../errors.js';

export interface EngineCommandOptions {
  config?: string;
  check?: boolean;
}

/** `rivulet engine`: load and validate the config, start the engine, stop it on SIGTERM/SIGINT. */
export async function runEngineCommand(options: EngineCommandOptions): Promise<void> {
  const { loaded, devProfile } = await loadConfig(options);
  if (options.check) {
    for (const warning of loaded.warnings) process.stderr.write(`warning: ${warning}\n`);
    process.stdout.write('config ok\n');
    process.exit(0);
  }

  const { config, warnings } = loaded;
  const log = createLogger(config.engine.log_level);
  for (const warning of warnings) log.warn(warning);
  if (devProfile) {
    log.warn({ directory: DEV_DIRECTORY }, 'using the embedded development profile: not for production');
    if (devProfile.created.length > 0) log.info({ files: devProfile.created }, 'created development files');
  }

  const fatal = (reason: string): void => {
    log.fatal(reason);
    process.exit(1);
  };
  const shutdown = stopOnSignals(log, fatal);
  let engine: RunningEngine;
  try {
    // Loaded once the config is good: a config error need not load the engine, uWS and prom-client.
    const { startEngine } = await import('../engine.js');
    engine = await startEngine(config, log, fatal);
  } catch (error) {
    exitWithStartupError(error);
  }
  if (shutdown.started(engine)) return;
  if (devProfile) logNextSteps(log, devProfile, engine.publicPort);
}

/** The config file (option or RSTREAM_ENGINE_CONFIG), or else the development profile; with --check, its certificate too. */
async function loadConfig(options: EngineCommandOptions): Promise<{ loaded: LoadedConfig; devProfile: DevProfile | undefined }> {
  const file = options.config ?? process.env.RSTREAM_ENGINE_CONFIG;
  let loaded: LoadedConfig;
  let devProfile: DevProfile | undefined;
  try {
    if (file) loaded = buildConfig(readConfigFile(file), process.env);
    else {
      devProfile = await prepareDevProfile(process.cwd(), process.env);
      loaded = buildConfig(devProfile.tree, process.env);
    }
    if (options.check) {
      await loadCertificatePair(loaded.config.certs.static.cert_file, loaded.config.certs.static.key_file);
    }
  } catch (error) {
    exitWithStartupError(error);
  }
  return { loaded, devProfile };
}

/**
 * SIGTERM/SIGINT shut the engine down; a second one exits at once. The handlers go in before startup so
 * that a signal arriving while workers start is not fatal: the engine stops as soon as it is `started`.
 */
function stopOnSignals(log: Logger, fatal: (reason: string) => void): { started(engine: RunningEngine): boolean } {
  let engine: RunningEngine | undefined;
  let signals = 0;
  const stop = (running: RunningEngine): void => {
    running.shutdown().then(
      () => process.exit(0),
      (error: Error) => fatal(`shutdown failed: ${error.message}`),
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'signal received');
    if (engine) stop(engine);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    /** Returns true when a signal came during startup: the engine is then stopping. */
    started(running) {
      engine = running;
      if (signals === 0) return false;
      stop(running);
      return true;
    },
  };
}

function logNextSteps(log: Logger, devProfile: DevProfile, port: number): void {
  // Absolute paths: the lines work pasted into a shell in any directory (README's quick start).
  const ca = path.resolve(devProfile.caFile);
  const secret = path.resolve(devProfile.secretFile);
  log.info(
    {
      ca_file: ca,
      mint_token: `rivulet token mint --secret-file ${secret}`,
      publish: `RSTREAM_ENGINE=localhost:${port} NODE_EXTRA_CA_CERTS=${ca} RSTREAM_AUTHENTICATION_TOKEN=$(rivulet token mint --secret-file ${secret}) rivulet forward 3000`,
      check: `curl --cacert ${ca} https://localhost:${port}/api/openapi.json`,
    },
    `next steps: publish localhost:3000 with the "publish" command; trust ${ca} in curl or a browser`,
  );
}

function exitWithStartupError(error: unknown): never {
  // Rivulet's own errors say what to fix in their first words (`config error: <key>: …`); anything else is unexpected.
  if (error instanceof RivuletError) process.stderr.write(error.message + '\n');
  else process.stderr.write(`startup error: ${(error as Error).message ?? String(error)}\n`);
  process.exit(1);
}
