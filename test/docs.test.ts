import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { envNameForKey, schemaDefinition } from '../src/config/schema.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SKIP_DIRECTORIES = new Set(['node_modules', 'dist', '.git', '.rivulet']);

function filesUnder(directory: string, keep: (name: string) => boolean): string[] {
  return fs.readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) return SKIP_DIRECTORIES.has(entry.name) ? [] : filesUnder(full, keep);
    return keep(entry.name) ? [full] : [];
  });
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const match of markdown.matchAll(/^#{1,6} (.+)$/gm)) anchors.add(slug(match[1]!));
  return anchors;
}

test('every relative link in the repository’s Markdown resolves inside the repository, anchors included', () => {
  const problems: string[] = [];
  for (const file of filesUnder(ROOT, (name) => name.endsWith('.md'))) {
    const text = fs.readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
    for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1]!;
      if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
      const [where, anchor] = target.split('#') as [string, string | undefined];
      const resolved = where === '' ? file : path.resolve(path.dirname(file), where);
      const from = path.relative(ROOT, file);
      if (!resolved.startsWith(ROOT)) problems.push(`${from}: ${target} leaves the repository`);
      else if (!fs.existsSync(resolved)) problems.push(`${from}: ${target} does not exist`);
      else if (anchor && resolved.endsWith('.md') && !anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
        problems.push(`${from}: ${target} names no heading of ${path.relative(ROOT, resolved)}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('docs/configuration.md lists every configuration key with its environment variable', () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'configuration.md'), 'utf8');
  const keys: string[] = [];
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [name, value] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${name}` : name;
      if (value && typeof value === 'object' && 'format' in value) keys.push(key);
      else walk(value as Record<string, unknown>, key);
    }
  };
  walk(schemaDefinition as Record<string, unknown>, '');
  const missing = keys.filter((key) => !doc.includes(`| \`${key}\` |`) || !doc.includes(`\`${envNameForKey(key)}\``));
  assert.deepEqual(missing, []);
});

test('the repository stands alone: nothing points to a file outside it, a specification section or an issue number', () => {
  const SOURCES = /\.(ts|md|yaml|yml|json|sh)$|^(Dockerfile|run)$/;
  const FORBIDDEN: Array<[RegExp, string]> = [
    [/\.\.\/shared|\bspec\/|\b(engine|design)\.md\b/, 'a file outside the repository'],
    [/(?<!RFC \d{3,5} )§\s?\d/, 'a section of a document that is not here (RFC sections excepted)'],
    [/\bissues? #?\d+\b/i, 'an issue number'],
  ];
  const problems: string[] = [];
  // Generated results and the lockfile are not prose; this file spells the patterns out.
  const files = filesUnder(ROOT, (name) => SOURCES.test(name)).filter(
    (file) => !file.includes(`${path.sep}bench${path.sep}results${path.sep}`) && !file.endsWith('package-lock.json') && !file.endsWith(path.join('test', 'docs.test.ts')),
  );
  for (const file of files) {
    fs.readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, index) => {
        for (const [pattern, what] of FORBIDDEN) {
          if (pattern.test(line)) problems.push(`${path.relative(ROOT, file)}:${index + 1}: ${what}: ${line.trim().slice(0, 120)}`);
        }
      });
  }
  assert.deepEqual(problems, []);
});

test('every docs/… page and heading a code comment cites exists', () => {
  const problems: string[] = [];
  for (const file of filesUnder(ROOT, (name) => name.endsWith('.ts'))) {
    for (const match of fs.readFileSync(file, 'utf8').matchAll(/docs\/([\w-]+\.md)(?:#([\w-]+))?/g)) {
      const page = path.join(ROOT, 'docs', match[1]!);
      if (!fs.existsSync(page)) problems.push(`${path.relative(ROOT, file)}: docs/${match[1]} does not exist`);
      else if (match[2] && !anchorsOf(fs.readFileSync(page, 'utf8')).has(match[2])) problems.push(`${path.relative(ROOT, file)}: ${match[0]} names no heading`);
    }
  }
  assert.deepEqual(problems, []);
});
