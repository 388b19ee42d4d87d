#!/usr/bin/env node
// dist/cjs holds CommonJS although the package is `"type": "module"`: this nested
// package.json tells Node (and TypeScript) so, for the .js and the .d.ts files below it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cjs');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'commonjs' }) + '\n');
