#!/usr/bin/env node
// Builds the package from lib/: dist/esm (the package's own `"type": "module"`) and
// dist/cjs (`module: commonjs`, marked by a nested package.json). One source, two
// compilations; package.json's `exports` picks one per importer (`import` / `require`).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const run = (file, args) => execFileSync(process.execPath, [file, ...args], { cwd: root, stdio: 'inherit' });

run(join(root, 'scripts/entries.mjs'), ['--check']);
rmSync(join(root, 'dist/esm'), { recursive: true, force: true });
rmSync(join(root, 'dist/cjs'), { recursive: true, force: true });
run(tsc, ['-p', 'tsconfig.build.json']);
run(tsc, ['-p', 'tsconfig.build-cjs.json']);
run(join(root, 'scripts/write-cjs-marker.mjs'), []);
