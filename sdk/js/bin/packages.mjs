// The SDK's own packages (esbuild, componentize-js, typescript). A project that installs the SDK
// by path (`file:`) gets a link to this folder, and npm does not install a linked folder's
// packages: they are installed here from the SDK's lock file the first time they are needed.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** Installs the SDK's packages in `sdk` with `npm ci` unless esbuild already resolves from it. */
export function ensurePackages(sdk, tool) {
  try {
    createRequire(join(sdk, 'package.json')).resolve('esbuild');
    return;
  } catch {
    // Not installed yet.
  }
  if (!existsSync(join(sdk, 'package-lock.json'))) {
    console.error(`${tool}: the SDK's packages are missing in ${sdk}; run npm install there`);
    process.exit(1);
  }
  console.error(`${tool}: installing the SDK's own packages in ${sdk} (npm ci, once)`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const done = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: sdk, stdio: 'inherit' });
  if (done.status !== 0) {
    console.error(`${tool}: npm ci in ${sdk} failed (above)`);
    process.exit(1);
  }
}
