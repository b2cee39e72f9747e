import { ParamsError } from '../errors.js';

/**
 * The `params` query of the Engine API (docs/engine-api.md): list params (`limit`, `filters`) and
 * watch params (`clients`, `tunnels`), checked strictly (a bad one is a 400 that names the problem)
 * and compiled to a predicate over API objects.
 */

type FieldKind = 'string' | 'boolean' | 'hostname' | 'labels';

const TUNNEL_FIELDS: Record<string, FieldKind> = {
  id: 'string',
  name: 'string',
  type: 'string',
  status: 'string',
  client_id: 'string',
  user_id: 'string',
  publish: 'boolean',
  protocol: 'string',
  hostname: 'hostname',
  http_version: 'string',
  labels: 'labels',
};

const CLIENT_FIELDS: Record<string, FieldKind> = {
  id: 'string',
  status: 'string',
  user_id: 'string',
  agent: 'string',
  channel: 'string',
  version: 'string',
  os: 'string',
  arch: 'string',
  protocol_version: 'string',
  labels: 'labels',
};

export type ObjectFilter = (object: Record<string, unknown>) => boolean;

export interface ListParams {
  limit: number | undefined;
  filter: ObjectFilter;
}

export interface WatchParams {
  clients: ObjectFilter;
  tunnels: ObjectFilter;
}

const MATCH_ALL: ObjectFilter = () => true;

export function parseListParams(raw: string | ParamsError | undefined, kind: 'clients' | 'tunnels'): ListParams {
  const params = parseJsonObject(raw);
  if (!params) return { limit: undefined, filter: MATCH_ALL };
  rejectUnknown(params, ['limit', 'filters'], 'params');
  let limit: number | undefined;
  if (params.limit !== undefined) {
    if (typeof params.limit !== 'number' || !Number.isInteger(params.limit) || params.limit < 1) {
      throw new ParamsError('params.limit: must be an integer >= 1');
    }
    limit = params.limit;
  }
  const fields = kind === 'clients' ? CLIENT_FIELDS : TUNNEL_FIELDS;
  return { limit, filter: params.filters === undefined ? MATCH_ALL : compileFilter(params.filters, fields, 'params.filters') };
}

export function parseWatchParams(raw: string | ParamsError | undefined): WatchParams {
  const params = parseJsonObject(raw);
  if (!params) return { clients: MATCH_ALL, tunnels: MATCH_ALL };
  rejectUnknown(params, ['clients', 'tunnels'], 'params');
  return {
    clients: params.clients === undefined ? MATCH_ALL : compileFilter(params.clients, CLIENT_FIELDS, 'params.clients'),
    tunnels: params.tunnels === undefined ? MATCH_ALL : compileFilter(params.tunnels, TUNNEL_FIELDS, 'params.tunnels'),
  };
}

/** The JSON array of the objects that pass, first to last, up to `limit`, from their cached JSON. */
export function listJson(objects: Iterable<{ object: object; json: string }>, params: ListParams): string {
  const kept: string[] = [];
  for (const { object, json } of objects) {
    if (params.limit !== undefined && kept.length >= params.limit) break;
    if (params.filter(object as Record<string, unknown>)) kept.push(json);
  }
  return `[${kept.join(',')}]`;
}

/** `raw` is a ParamsError when the query could not even be decoded. */
function parseJsonObject(raw: string | ParamsError | undefined): Record<string, unknown> | undefined {
  if (raw instanceof ParamsError) throw raw;
  if (raw === undefined || raw === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new ParamsError('params: not valid JSON');
  }
  if (!isPlainObject(value)) throw new ParamsError('params: must be a JSON object');
  return value;
}

function compileFilter(value: unknown, fields: Record<string, FieldKind>, path: string): ObjectFilter {
  if (!isPlainObject(value)) throw new ParamsError(`${path}: must be an object`);
  rejectUnknown(value, Object.keys(fields), path);
  const tests: ObjectFilter[] = [];
  for (const [field, condition] of Object.entries(value)) {
    const kind = fields[field]!;
    tests.push(kind === 'labels' ? compileLabels(condition, `${path}.labels`) : compileField(field, kind, condition, `${path}.${field}`));
  }
  return (object) => tests.every((test) => test(object));
}

/** A value, `{"exact": v}` or `{"oneof": [v, …]}`; anything else is a 400. */
function compileField(field: string, kind: FieldKind, condition: unknown, path: string): ObjectFilter {
  let accepted: unknown[];
  if (isPlainObject(condition)) {
    const operators = Object.keys(condition);
    if (operators.length !== 1 || !['exact', 'oneof'].includes(operators[0]!)) {
      throw new ParamsError(`${path}: operator ${JSON.stringify(operators.join(','))} is not supported (use a value, exact or oneof)`);
    }
    if ('oneof' in condition) {
      if (!Array.isArray(condition.oneof) || condition.oneof.length === 0) throw new ParamsError(`${path}.oneof: must be a non-empty array`);
      accepted = condition.oneof;
    } else accepted = [condition.exact];
  } else accepted = [condition];
  const expected = kind === 'boolean' ? 'boolean' : 'string';
  for (const value of accepted) {
    if (typeof value !== expected) throw new ParamsError(`${path}: must be a ${expected}`);
  }
  if (kind === 'hostname') {
    const names = new Set(accepted.map((value) => (value as string).toLowerCase()));
    return (object) => typeof object[field] === 'string' && names.has((object[field] as string).toLowerCase());
  }
  return (object) => object[field] !== undefined && accepted.includes(object[field]);
}

/** Every listed label must be present; a string must be equal, null means any value. */
function compileLabels(condition: unknown, path: string): ObjectFilter {
  if (!isPlainObject(condition)) throw new ParamsError(`${path}: must be an object`);
  for (const [key, value] of Object.entries(condition)) {
    if (value !== null && typeof value !== 'string') throw new ParamsError(`${path}.${key}: must be a string or null`);
  }
  const wanted = Object.entries(condition) as Array<[string, string | null]>;
  return (object) => {
    const labels = object.labels;
    if (wanted.length === 0) return true;
    if (!isPlainObject(labels)) return false;
    return wanted.every(([key, value]) => Object.hasOwn(labels, key) && (value === null || labels[key] === value));
  };
}

function rejectUnknown(object: Record<string, unknown>, known: readonly string[], path: string): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) throw new ParamsError(`${path}.${key}: unknown key`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
