import type { Command } from 'commander';

/** Ends a command's --help with a few real invocations: what a reader copies first. */
export function withExamples(command: Command, examples: readonly string[]): Command {
  return command.addHelpText('after', `\nExamples:\n${examples.map((example) => `  ${example}`).join('\n')}\n`);
}
