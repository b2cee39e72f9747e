/** A command-line mistake: printed on stderr, exit status 2 (engine.md §17.1). */
export class UsageError extends Error {
  override name = 'UsageError';
}
