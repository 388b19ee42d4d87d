#!/usr/bin/env node
// Writes package.json's `exports` and `typesVersions` from scripts/entry-points.mjs.
// `--check`: exits 1 (and says what differs) instead of writing; the package test runs it.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportsField, typesVersionsField } from './entry-points.mjs';

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json');
const text = readFileSync(file, 'utf8');
const pkg = JSON.parse(text);
const wanted = { exports: exportsField(), typesVersions: typesVersionsField() };
const stale = Object.keys(wanted).filter((k) => JSON.stringify(pkg[k]) !== JSON.stringify(wanted[k]));

if (process.argv.includes('--check')) {
  if (stale.length > 0) {
    console.error(
      `package.json: ${stale.join(', ')} out of date with scripts/entry-points.mjs; run \`npm run entries\``,
    );
    process.exit(1);
  }
} else if (stale.length > 0) {
  for (const k of stale) pkg[k] = wanted[k];
  writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n');
  console.log(`package.json: wrote ${stale.join(', ')}`);
}
