// Builds the administration console: console/src/main.tsx and console/styles.css
// bundled and minified by esbuild into <out>/assets/app-<hash>.js and .css, and
// <out>/index.html pointing at them, with <out>/manifest.json naming both. Content
// hashes let the relay serve /assets/ as immutable; index.html is the only file it
// must not cache. No network is used: everything comes from node_modules.
//   node scripts/build-console.mjs [--out dir]   (default dist/console)
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const at = process.argv.indexOf('--out');
const out = path.resolve(at > 0 && process.argv[at + 1] ? process.argv[at + 1] : path.join(ROOT, 'dist/console'));

const result = await build({
  absWorkingDir: ROOT,
  entryPoints: [
    { in: 'console/src/main.tsx', out: 'app' },
    { in: 'console/styles.css', out: 'app' },
  ],
  outdir: path.join(out, 'assets'),
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  tsconfig: 'console/tsconfig.json',
  legalComments: 'none',
  charset: 'utf8',
  metafile: true,
  write: false,
  logLevel: 'warning',
});

const assets = {};
for (const file of result.outputFiles) {
  const ext = path.extname(file.path).slice(1);
  assets[`app.${ext}`] = `assets/${path.basename(file.path)}`;
}
if (!assets['app.js'] || !assets['app.css']) throw new Error(`esbuild wrote ${Object.keys(assets).join(', ')}`);

const template = await readFile(path.join(ROOT, 'console/index.html'), 'utf8');
const html = template.replace('%APP_CSS%', `/${assets['app.css']}`).replace('%APP_JS%', `/${assets['app.js']}`);
if (html.includes('%APP_')) throw new Error('console/index.html: a placeholder was left unreplaced');

// Stale hashed files from an earlier build would be served forever: the folder is laid anew.
await rm(path.join(out, 'assets'), { recursive: true, force: true });
await mkdir(path.join(out, 'assets'), { recursive: true });
for (const file of result.outputFiles) await writeFile(file.path, file.contents);
await writeFile(path.join(out, 'index.html'), html);
await writeFile(path.join(out, 'manifest.json'), `${JSON.stringify(assets, null, 2)}\n`);

const sizes = result.outputFiles.map((f) => `${path.basename(f.path)} ${f.contents.length} B`).join(', ');
process.stdout.write(`console: ${path.relative(process.cwd(), out) || '.'} (${sizes})\n`);
