/** A command-line mistake: printed on stderr, exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A command that cannot run as configured (no engine, no token…): printed on stderr, exit status 1. */
export class CommandError extends Error {
  override name = 'CommandError';
}
