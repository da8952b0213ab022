#!/usr/bin/env node
// Build the /phone page: bundle src/phone.js (+ jssip) into one minified file and copy the
// HTML and CSS next to it.
//
//   node web/build.mjs [OUTDIR]        (default OUTDIR: web/dist)
//
// Output: OUTDIR/phone.html, OUTDIR/phone.css, OUTDIR/phone.js. No network at build or run
// time. The same sources and the same esbuild version give the same bytes (no timestamps, no
// absolute paths, no source map).
//
// esbuild's npm postinstall step may not have run (npm ci --ignore-scripts, or npm declining
// to run install scripts). The platform package (@esbuild/linux-x64 etc.) carries the binary
// itself, so ESBUILD_BINARY_PATH is pointed at it before esbuild is loaded.
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = join(HERE, 'src');
const OUT = resolve(process.argv[2] || join(HERE, 'dist'));
const require = createRequire(join(HERE, 'package.json'));

function fail(msg) {
  process.stderr.write(`web/build.mjs: ${msg}\n`);
  process.exit(1);
}

if (!existsSync(join(HERE, 'node_modules', 'jssip')) || !existsSync(join(HERE, 'node_modules', 'esbuild'))) {
  fail(`node_modules missing in ${HERE}: run \`npm ci --prefix ${HERE}\` first`);
}

function platformBinary() {
  const arch = { x64: 'x64', arm64: 'arm64', ia32: 'ia32', arm: 'arm' }[process.arch] || process.arch;
  const pkg = `@esbuild/${process.platform}-${arch}`;
  const sub = process.platform === 'win32' ? 'esbuild.exe' : 'bin/esbuild';
  try {
    return require.resolve(`${pkg}/${sub}`);
  } catch (e) {
    return null;
  }
}

if (!process.env.ESBUILD_BINARY_PATH) {
  const bin = platformBinary();
  if (bin) {
    try {
      if (process.platform !== 'win32' && (statSync(bin).mode & 0o111) === 0) chmodSync(bin, 0o755);
    } catch (e) { /* read-only node_modules: try as is */ }
    process.env.ESBUILD_BINARY_PATH = bin;
  }
}

const esbuild = await import(require.resolve('esbuild')).then((m) => m.default || m);

// JsSIP reads only name/title/version from its package.json; bundle just those instead of
// the whole manifest (scripts, devDependencies, ...).
const jssipPackageJson = {
  name: 'jssip-package-json',
  setup(build) {
    build.onLoad({ filter: /[\\/]jssip[\\/]package\.json$/ }, (args) => {
      const pkg = JSON.parse(readFileSync(args.path, 'utf8'));
      return { contents: JSON.stringify({ name: pkg.name, title: pkg.title, version: pkg.version }), loader: 'json' };
    });
  },
};

const result = await esbuild.build({
  absWorkingDir: HERE,
  entryPoints: [join(SRC, 'phone.js')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome100', 'firefox100', 'safari15'],
  minify: true,
  legalComments: 'eof',
  charset: 'utf8',
  sourcemap: false,
  write: false,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
  plugins: [jssipPackageJson],
});
if (result.errors.length) fail('esbuild failed');
if (result.outputFiles.length !== 1) fail(`expected one output file, got ${result.outputFiles.length}`);

// The operator console (/console): src/console.js with Chart.js, one minified file.
if (!existsSync(join(HERE, 'node_modules', 'chart.js'))) {
  fail(`node_modules/chart.js missing in ${HERE}: run \`npm ci --prefix ${HERE}\` again`);
}
const consoleResult = await esbuild.build({
  absWorkingDir: HERE,
  entryPoints: [join(SRC, 'console.js')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome100', 'firefox100', 'safari15'],
  minify: true,
  write: false,
  legalComments: 'eof',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
if (consoleResult.errors.length) fail('esbuild failed on console.js');
if (consoleResult.outputFiles.length !== 1) fail('expected one console output file');

mkdirSync(OUT, { recursive: true });
const files = {
  'phone.js': Buffer.from(result.outputFiles[0].contents),
  'phone.html': readFileSync(join(SRC, 'phone.html')),
  'phone.css': readFileSync(join(SRC, 'phone.css')),
  'console.js': Buffer.from(consoleResult.outputFiles[0].contents),
  'console.html': readFileSync(join(SRC, 'console.html')),
  'console.css': readFileSync(join(SRC, 'console.css')),
};
for (const [name, bytes] of Object.entries(files)) {
  const p = join(OUT, name);
  // leave an identical file alone (keeps its mtime, so cargo's rerun checks stay quiet)
  if (existsSync(p) && readFileSync(p).equals(bytes)) continue;
  writeFileSync(p, bytes);
}
const sizes = Object.entries(files).map(([n, b]) => `${n} ${b.length} B`).join(', ');
process.stdout.write(`web/build.mjs: ${OUT}: ${sizes}\n`);
