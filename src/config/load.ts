import fs from 'node:fs';
import convict from 'convict';
import YAML from 'yaml';
import { isLoopbackHost, parseListenAddress } from './address.js';
import { ENV_PREFIX, leafProblem, parseLeaf, schemaDefinition, schemaLeaves, type EngineConfig } from './schema.js';
import { ConfigError } from '../errors.js';

export interface LoadedConfig {
  config: EngineConfig;
  /** Non-fatal findings to log once the logger exists (unknown env overrides, weak secret). */
  warnings: string[];
}

type Tree = Record<string, unknown>;

/** Reads and parses a YAML config file; errors name the file (and line:column for syntax errors). */
export function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`config error: cannot read config file "${file}": ${(error as Error).message}`]);
  }
  const document = YAML.parseDocument(text);
  const syntaxError = document.errors[0];
  if (syntaxError) {
    const where = syntaxError.linePos?.[0];
    const position = where ? `:${where.line}:${where.col}` : '';
    const message = syntaxError.message.split('\n')[0];
    throw new ConfigError([`config error: "${file}"${position}: invalid YAML: ${message}`]);
  }
  const tree: unknown = document.toJS();
  if (tree === null || tree === undefined) return {};
  if (typeof tree !== 'object' || Array.isArray(tree)) {
    throw new ConfigError([`config error: "${file}": the top level must be a mapping`]);
  }
  return tree as Tree;
}

/**
 * Builds the engine configuration from a parsed tree (a file or the development profile) and the
 * `RSTREAM_ENGINE_*` environment overrides. Every problem is reported at once.
 */
export function buildConfig(tree: Tree, env: NodeJS.ProcessEnv): LoadedConfig {
  const errors = structuralErrors(tree, schemaDefinition, '');

  const leaves = schemaLeaves();
  const leafByEnv = new Map(leaves.map(([path, leaf]) => [leaf.env, path]));
  const warnings: string[] = [];
  const overrides: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === `${ENV_PREFIX}CONFIG`) continue;
    if (leafByEnv.has(name)) overrides[name] = value;
    else {
      const key = name.slice(ENV_PREFIX.length).toLowerCase().split('__').join('.');
      warnings.push(`ignoring environment variable ${name}: no config key "${key}"`);
    }
  }

  const store = convict(schemaDefinition as never, { env: overrides, args: [] });
  store.load(knownPart(tree, schemaDefinition));

  // Every leaf is checked even when others failed: all problems are reported at once.
  const values = new Map<string, unknown>();
  const failed = new Set<string>();
  for (const [path, leaf] of leaves) {
    const value: unknown = store.get(path as never);
    if (value === undefined || value === null) {
      if (leaf.required) {
        errors.push(`config error: ${path}: required`);
        failed.add(path);
      }
      continue;
    }
    const problem = leafProblem(leaf, value);
    if (problem) {
      errors.push(`config error: ${path}: ${problem}`);
      failed.add(path);
    } else values.set(path, value);
  }
  errors.push(...crossFieldErrors(values, failed));
  if (errors.length > 0) throw new ConfigError(errors);

  const config = assemble(values);
  return { config, warnings };
}

/** Unknown keys and sections that are not mappings (YAML null means "not set" and is allowed). */
function structuralErrors(tree: Tree, schema: Tree, prefix: string): string[] {
  const errors: string[] = [];
  for (const [name, value] of Object.entries(tree)) {
    const path = prefix ? `${prefix}.${name}` : name;
    const node = schema[name] as Tree | undefined;
    if (!node || !Object.hasOwn(schema, name)) {
      errors.push(`config error: unknown key "${path}"`);
    } else if (!('format' in node) && value !== null) {
      if (typeof value !== 'object' || Array.isArray(value)) errors.push(`config error: ${path}: expected a mapping`);
      else errors.push(...structuralErrors(value as Tree, node, path));
    }
  }
  return errors;
}

/** The known keys and well-formed sections of the tree, without YAML nulls ("not set"). */
function knownPart(tree: Tree, schema: Tree): Tree {
  const out: Tree = {};
  for (const [name, value] of Object.entries(tree)) {
    const node = Object.hasOwn(schema, name) ? (schema[name] as Tree) : undefined;
    if (value === null || !node) continue;
    if ('format' in node) out[name] = value;
    else if (typeof value === 'object' && !Array.isArray(value)) out[name] = knownPart(value as Tree, node);
  }
  return out;
}

/** The config tree from the valid leaves, each parsed to the type the schema gives it. */
function assemble(values: Map<string, unknown>): EngineConfig {
  const config: Tree = {};
  for (const [path, leaf] of schemaLeaves()) {
    const keys = path.split('.');
    let node = config;
    for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Tree;
    const value = values.get(path);
    node[keys.at(-1)!] = value === undefined ? undefined : parseLeaf(leaf, value);
  }
  return config as unknown as EngineConfig;
}

/** Rules between keys, judged only on keys that are valid themselves (a broken key was reported already). */
function crossFieldErrors(values: Map<string, unknown>, failed: Set<string>): string[] {
  const errors: string[] = [];
  const missing = (path: string): boolean => !values.has(path) && !failed.has(path);
  const mustBeTrue: Array<[string, string]> = [
    ['tls.enabled', 'the TLS listener is required'],
    ['certs.static.enabled', 'the static provider is the only certificate provider'],
    ['auth.jwt.enabled', 'JWT authentication is required'],
  ];
  for (const [path, why] of mustBeTrue) {
    if (values.has(path) && values.get(path) !== true) errors.push(`config error: ${path}: must be true (${why})`);
  }
  if (values.get('http.enabled') === true && missing('http.listen_addr')) {
    errors.push('config error: http.listen_addr: required when http.enabled is true');
  }
  if (values.get('metrics.prometheus.enabled') === true) {
    const address = values.get('metrics.prometheus.listen_addr') as string | undefined;
    if (missing('metrics.prometheus.listen_addr')) {
      errors.push('config error: metrics.prometheus.listen_addr: required when metrics are enabled');
    } else if (address && !isLoopbackHost(parseListenAddress(address)!.host) && missing('metrics.prometheus.bearer_token')) {
      errors.push('config error: metrics.prometheus.bearer_token: required when listen_addr is not a loopback address');
    }
  }
  if (values.get('dataplane.affinity.enabled') === true) {
    const portBase = values.get('dataplane.affinity.port_base') as number | undefined;
    const workers = values.get('dataplane.workers') as number | undefined;
    if (missing('dataplane.affinity.port_base')) {
      errors.push('config error: dataplane.affinity.port_base: required when affinity is enabled');
    } else if (portBase !== undefined && workers !== undefined && portBase + workers - 1 > 65535) {
      errors.push('config error: dataplane.affinity.port_base: port_base + workers - 1 must not exceed 65535');
    }
  }
  return errors;
}
