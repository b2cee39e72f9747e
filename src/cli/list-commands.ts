import { Command, Option } from 'commander';
import { apiPath, getJson } from './api-client.js';
import { resolveTarget, type TargetFlags } from './engine-target.js';
import { parseFilterFlags, type FilterKind } from './filter-flags.js';
import { collect, positiveInteger } from './option-parsers.js';
import { withTargetOptions } from './agent-commands.js';
import { withExamples } from './help-examples.js';

interface ListFlags extends TargetFlags {
  filter: string[];
  limit?: number;
  output: 'text' | 'json';
}

/** The table columns of `tunnel list` and `client list` (docs/cli.md#rivulet-tunnel-list-rivulet-client-list). */
const COLUMNS: Record<FilterKind, Array<[string, (object: Record<string, unknown>) => unknown]>> = {
  tunnels: [
    ['ID', (tunnel) => tunnel.id],
    ['NAME', (tunnel) => tunnel.name],
    ['PROTOCOL', (tunnel) => tunnel.protocol],
    ['PUBLISH', (tunnel) => tunnel.publish],
    // The address a visitor types: the port too when it is not 443 (a development engine on 8443).
    ['HOSTNAME', (tunnel) => (tunnel.hostname && tunnel.port && tunnel.port !== 443 ? `${tunnel.hostname}:${tunnel.port}` : tunnel.hostname)],
    ['CLIENT', (tunnel) => tunnel.client_id],
    ['CREATED', (tunnel) => tunnel.creation_date],
  ],
  clients: [
    ['ID', (client) => client.id],
    ['USER', (client) => client.user_id],
    ['AGENT', (client) => client.agent],
    ['VERSION', (client) => client.version],
    ['OS/ARCH', (client) => (client.os || client.arch ? `${client.os ?? '-'}/${client.arch ?? '-'}` : undefined)],
    ['PROTOCOL', (client) => client.protocol_version],
  ],
};

/** `rivulet tunnel list` and `rivulet client list`. */
export function addListCommands(program: Command): void {
  for (const [noun, kind] of [['tunnel', 'tunnels'], ['client', 'clients']] as const) {
    const list = withTargetOptions(program.command(noun).description(`${noun}s of the engine`).command('list').description(`list live ${kind}, oldest first`))
      .option('--filter <k=v,...>', 'filter (repeatable): key=value, labels.<key>=value', collect, [])
      .option('--limit <n>', 'at most n results', positiveInteger)
      .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
      .action(async (flags: ListFlags) => {
        const target = resolveTarget(flags);
        const filters = parseFilterFlags(flags.filter, kind, '--filter');
        const params = { ...(flags.limit ? { limit: flags.limit } : {}), ...(filters ? { filters } : {}) };
        const objects = (await getJson(target, apiPath(`/api/${kind}`, params))) as Array<Record<string, unknown>>;
        process.stdout.write(flags.output === 'json' ? `${JSON.stringify(objects)}\n` : table(kind, objects));
      });
    withExamples(
      list,
      kind === 'tunnels'
        ? ['rivulet tunnel list', 'rivulet tunnel list --filter labels.env=prod --filter publish=true -o json']
        : ['rivulet client list', 'rivulet client list --filter agent=rivulet --limit 10'],
    );
  }
}

function table(kind: FilterKind, objects: Array<Record<string, unknown>>): string {
  const columns = COLUMNS[kind];
  const rows = [columns.map(([title]) => title), ...objects.map((object) => columns.map(([, cell]) => String(cell(object) ?? '-')))];
  const widths = columns.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n') + '\n';
}
