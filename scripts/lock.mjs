#!/usr/bin/env node
// `npm run lock`: rewrites package-lock.json (and test/compat/nest11's) from scratch, then
// installs from it with `npm ci`. A lock file written without node_modules lists every
// platform's optional packages (msgpackr-extract's darwin, linux and win32 builds); one
// updated by `npm install` on a machine lists only that machine's, and `npm ci` elsewhere
// then refuses it as out of sync.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

for (const dir of [root, join(root, 'test/compat/nest11')]) {
  rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
  rmSync(join(dir, 'package-lock.json'), { force: true });
  execFileSync(npm, ['install', '--package-lock-only', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
}
for (const dir of [root, join(root, 'test/compat/nest11')]) {
  execFileSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
}
