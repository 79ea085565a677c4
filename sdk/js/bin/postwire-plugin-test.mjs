#!/usr/bin/env node
// Runs a Postwire plugin's tests with Node's own test runner (`node --test`): each test file,
// TypeScript or JavaScript, is bundled with the plugin and the SDK by esbuild (the SDK's own,
// as for a build) into node_modules/.cache/postwire-plugin-test, then run. No type check here:
// `postwire-plugin-build` does it.
//
//   postwire-plugin-test [TEST FILES (default test/*.test.ts, test/*.test.js)]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePackages } from './packages.mjs';

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const sdk = resolve(here, '..');

function fail(message) {
  console.error(`postwire-plugin-test: ${message}`);
  process.exit(1);
}

let files = process.argv.slice(2);
if (files.includes('-h') || files.includes('--help')) {
  console.log('usage: postwire-plugin-test [TEST FILES (default test/*.test.ts, test/*.test.js)]');
  process.exit(0);
}
if (files.length === 0 && existsSync('test')) {
  files = readdirSync('test')
    .filter((name) => /\.test\.[cm]?[jt]s$/.test(name))
    .sort()
    .map((name) => join('test', name));
}
if (files.length === 0) fail('no tests: give their paths, or put them in test/NAME.test.ts or test/NAME.test.js');
for (const file of files) if (!existsSync(file)) fail(`the test file ${resolve(file)} does not exist`);

ensurePackages(sdk, 'postwire-plugin-test');
const esbuild = await import('esbuild');
const out = resolve('node_modules', '.cache', 'postwire-plugin-test');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const bundles = [];
for (const file of files) {
  const bundle = join(out, basename(file).replace(/\.[cm]?[jt]s$/, '.mjs'));
  const built = await esbuild.build({
    entryPoints: [resolve(file)],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outfile: bundle,
    logLevel: 'error',
    nodePaths: [join(sdk, 'node_modules')],
    alias: { '@postwire/plugin-sdk': join(sdk, 'index.js') },
  });
  if (built.errors.length > 0) fail(`bundling ${file} failed (above)`);
  bundles.push(bundle);
}
const ran = spawnSync(process.execPath, ['--test', ...bundles], { stdio: 'inherit' });
process.exit(ran.status ?? 1);
