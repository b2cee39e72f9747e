// Builds the web dashboard into dist/dashboard (run by `npm run build` after the type check):
// one bundled script, its stylesheet and the page. The engine serves them from there.
import fs from 'node:fs';
import { build } from 'esbuild';

const out = new URL('../dist/dashboard/', import.meta.url);
fs.mkdirSync(out, { recursive: true });
await build({
  entryPoints: [new URL('src/main.ts', import.meta.url).pathname],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  outfile: new URL('app.js', out).pathname,
  logLevel: 'warning',
});
for (const file of ['index.html', 'app.css']) fs.copyFileSync(new URL(file, import.meta.url), new URL(file, out));
