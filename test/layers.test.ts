import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * The source tree's layers (docs/architecture.md#layers), bottom to top. A module may import from a
 * lower layer only, and from its own folder; two folders of one layer never import each other (so
 * control/ and dataplane/ stay apart). No two files import each other, however indirectly.
 */
const LAYERS: string[][] = [
  ['errors.ts'],
  ['protocol', 'net', 'version.ts'],
  ['certs', 'auth'],
  ['config'],
  ['log.ts'],
  ['threads'],
  ['control', 'dataplane'],
  ['api'],
  ['metrics'],
  ['engine.ts'],
  ['agent'],
  ['cli'],
];

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Every relative import of every source file (static, type-only, re-exports and dynamic), as src-relative paths. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const visit = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) visit(full);
      else if (entry.name.endsWith('.ts')) {
        const source = fs.readFileSync(full, 'utf8');
        const targets = [...source.matchAll(/(?:\bfrom|\bimport\s*\(?)\s*'(\.{1,2}\/[^']+)\.js'/g)].map((match) =>
          path.relative(SRC, path.resolve(path.dirname(full), `${match[1]}.ts`)),
        );
        graph.set(path.relative(SRC, full), targets);
      }
    }
  };
  visit(SRC);
  return graph;
}

/** A file's unit in the layer table: its top folder, or the file itself at the top of src/. */
function unitOf(file: string): string {
  return file.split(path.sep)[0]!;
}

function layerOf(unit: string): number {
  const layer = LAYERS.findIndex((units) => units.includes(unit));
  assert.ok(layer >= 0, `${unit} is in no layer: add it to the table in this test and to docs/architecture.md#layers`);
  return layer;
}

/** The import cycles among files (strongly connected components of more than one file, or a self-import). */
function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const connect = (file: string): void => {
    index.set(file, next);
    low.set(file, next++);
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        connect(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) low.set(file, Math.min(low.get(file)!, index.get(target)!));
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || (graph.get(file) ?? []).includes(file)) found.push(component.sort());
    }
  };
  for (const file of graph.keys()) if (!index.has(file)) connect(file);
  return found;
}

test('src/: every import goes down the layers or stays in its folder', () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `found the sources (${graph.size} files)`);
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    for (const target of targets) {
      assert.ok(graph.has(target), `${file} imports ${target}, which does not exist`);
      const [from, to] = [unitOf(file), unitOf(target)];
      if (from === to) continue;
      const [fromLayer, toLayer] = [layerOf(from), layerOf(to)];
      if (toLayer > fromLayer) wrong.push(`${file} → ${target}: upward (${from} is below ${to})`);
      if (toLayer === fromLayer) wrong.push(`${file} → ${target}: across one layer (${from} and ${to} must not import each other)`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('src/: no import cycle between files', () => {
  assert.deepEqual(cycles(importGraph()), []);
});

test('the layer check sees what it must refuse', () => {
  const graph = new Map([
    ['dataplane/a.ts', ['control/b.ts']],
    ['control/b.ts', ['control/c.ts']],
    ['control/c.ts', ['control/b.ts']],
  ]);
  assert.deepEqual(cycles(graph), [['control/b.ts', 'control/c.ts']]);
  assert.ok(layerOf('dataplane') === layerOf('control'), 'control and dataplane share a layer, so an import between them is refused');
  assert.ok(layerOf('threads') < layerOf('dataplane') && layerOf('engine.ts') > layerOf('metrics'));
});
