#!/usr/bin/env node
// Builds a Postwire plugin written in TypeScript or JavaScript into a WebAssembly component:
// type-checks (TypeScript, when the project has a tsconfig.json), bundles the plugin with the
// SDK, and componentizes it against the contract with every WASI feature disabled, so the
// component imports nothing but `postwire:plugin/log`.
//
//   postwire-plugin-build [src/plugin.ts] [-o plugin.wasm]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePackages } from './packages.mjs';

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const sdk = resolve(here, '..');

function fail(message) {
  console.error(`postwire-plugin-build: ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
let source;
let out;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-o' || args[i] === '--out') out = args[++i];
  else if (args[i] === '-h' || args[i] === '--help') {
    console.log('usage: postwire-plugin-build [SOURCE (default src/plugin.ts or src/plugin.js)] [-o OUT.wasm]');
    process.exit(0);
  } else if (source === undefined) source = args[i];
  else fail(`unexpected argument ${JSON.stringify(args[i])}; give one source file and -o OUT.wasm`);
}
source ??= ['src/plugin.ts', 'src/plugin.js'].find((path) => existsSync(path));
if (!source) fail('no source: give its path, or put the plugin in src/plugin.ts or src/plugin.js');
source = resolve(source);
if (!existsSync(source)) fail(`the source ${source} does not exist`);
const name = process.env.npm_package_name?.replace(/^@.*\//, '') ?? 'plugin';
out = resolve(out ?? join('dist', `${name}.wasm`));

// The contract: sdk/wit beside this package in a checkout, or the copy `npm pack` puts in it.
const wit = [resolve(sdk, '..', 'wit'), resolve(sdk, 'wit')].find((dir) => existsSync(join(dir, 'postwire.wit')));
if (!wit) fail(`cannot find postwire.wit in ${resolve(sdk, '..', 'wit')} or ${resolve(sdk, 'wit')}`);

ensurePackages(sdk, 'postwire-plugin-build');
const started = Date.now();
if (/\.[cm]?tsx?$/.test(source) && existsSync('tsconfig.json')) {
  const tsc = join(sdk, 'node_modules', 'typescript', 'bin', 'tsc');
  const checked = spawnSync(process.execPath, [existsSync(tsc) ? tsc : 'tsc', '--noEmit', '-p', 'tsconfig.json'], {
    stdio: 'inherit',
  });
  if (checked.status !== 0) fail('the type check failed (tsc --noEmit, above)');
}

const esbuild = await import('esbuild');
const shared = { bundle: true, format: 'esm', platform: 'neutral', target: 'es2022', write: false, logLevel: 'error' };
// First pass: what the plugin exports decides the world (transformer, classifier or both).
const probe = await esbuild.build({ ...shared, entryPoints: [source], metafile: true });
const exported = new Set(Object.values(probe.metafile.outputs)[0].exports);
const transform = exported.has('transform');
const classify = exported.has('classify');
if (!transform && !classify) {
  fail(`${source} exports neither transform nor classify (it exports: ${[...exported].join(', ') || 'nothing'})`);
}
const world = transform && classify ? 'plugin' : transform ? 'transformer' : 'classifier';

// The bundle is written beside the component, at a path that does not change between builds:
// the component records it, and the same sources must give the same bytes (uploads and the
// artifact cache go by sha256).
const bundle = out.replace(/\.wasm$/, '') + '.js';
mkdirSync(dirname(out), { recursive: true });
{
  const entry = `import { log } from 'postwire:plugin/log@0.2.0';
import * as plugin from ${JSON.stringify(source)};
import * as guest from ${JSON.stringify(join(sdk, 'guest.js'))};
guest.install(log);
${transform ? 'export const transform = { transform: (e, r, c) => guest.transform(plugin.transform, e, r, c) };' : ''}
${classify ? 'export const classify = { classify: (r, s, c) => guest.classify(plugin.classify, r, s, c) };' : ''}
`;
  const bundled = await esbuild.build({
    ...shared,
    stdin: { contents: entry, resolveDir: process.cwd(), sourcefile: 'postwire-entry.js', loader: 'js' },
    external: ['postwire:plugin/*'],
    nodePaths: [join(sdk, 'node_modules')],
    alias: { '@postwire/plugin-sdk': join(sdk, 'index.js') },
    outfile: bundle,
    write: true,
  });
  if (bundled.errors.length > 0) fail('bundling failed (above)');
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component, imports } = await componentize({
    sourcePath: bundle,
    witPath: wit,
    worldName: world,
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
  });
  const unexpected = imports.filter(([iface]) => !iface.startsWith('postwire:plugin/'));
  if (unexpected.length > 0) fail(`the component imports ${unexpected.map(([i]) => i).join(', ')}, which plugins may not use`);
  await writeFile(out, component);
  const size = statSync(out).size;
  console.log(
    `built ${out} (${(size / (1 << 20)).toFixed(1)} MiB, world ${world}, imports ${[...new Set(imports.map(([i]) => i))].join(', ') || 'nothing'}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
}
