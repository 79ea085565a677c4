// The SDK's own packages (esbuild, componentize-js, typescript). A project that installs the SDK
// by path (`file:`) gets a link to this folder, and npm does not install a linked folder's
// packages: they are installed here from the SDK's lock file the first time they are needed.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** Whether esbuild resolves from `sdk`. */
function installed(sdk) {
  try {
    createRequire(join(sdk, 'package.json')).resolve('esbuild');
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** An install that has held the lock this long died: its lock is taken over. */
const STALE_MS = 10 * 60 * 1000;

/** Waits while another build installs the SDK's packages (the lock folder exists). */
function waitForInstall(lock) {
  while (existsSync(lock)) {
    try {
      if (Date.now() - statSync(lock).mtimeMs > STALE_MS) return;
    } catch {
      return;
    }
    sleep(200);
  }
}

/**
 * Installs the SDK's packages in `sdk` with `npm ci` unless esbuild already resolves from it.
 * Builds started together install once: the first takes a lock folder (`mkdir` either creates
 * it or fails), the others wait for it to go before they look, since a package half installed
 * may resolve and then fail to load.
 */
export function ensurePackages(sdk, tool) {
  const lock = join(sdk, 'node_modules.lock');
  waitForInstall(lock);
  if (installed(sdk)) return;
  if (!existsSync(join(sdk, 'package-lock.json'))) {
    console.error(`${tool}: the SDK's packages are missing in ${sdk}; run npm install there`);
    process.exit(1);
  }
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      waitForInstall(lock);
      if (installed(sdk)) return;
      // Still there after the wait: a stale lock of an install that died.
      if (existsSync(lock)) rmSync(lock, { recursive: true, force: true });
    }
  }
  let failed = false;
  try {
    if (installed(sdk)) return;
    console.error(`${tool}: installing the SDK's own packages in ${sdk} (npm ci, once)`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    failed = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: sdk, stdio: 'inherit' }).status !== 0;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  if (failed) {
    console.error(`${tool}: npm ci in ${sdk} failed (above)`);
    process.exit(1);
  }
}
