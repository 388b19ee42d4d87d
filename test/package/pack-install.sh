#!/usr/bin/env bash
# `npm run test:package`: packs nest-wire (`npm pack`, which builds it through `prepack`),
# checks the tarball, then installs it into fresh apps in a temp dir OUTSIDE the repo, each
# with its own Nest from the registry, builds each with its own tsc and runs one real call:
#   esm-nest12  Nest 12 ESM app (type module, module nodenext), oldest Nest 12 release
#   cjs-nest11  Nest 11 CommonJS app (module commonjs, moduleResolution node, TypeScript 5.4),
#               plus a CommonJS jest test that require()s the package
# The apps' versions are pinned (test/package/*/package.json); each step has a time limit.
set -euo pipefail
# The registry as of this date for the test apps' dependencies (see the install step below).
APPS_REGISTRY_DATE="${APPS_REGISTRY_DATE:-2026-11-28T00:00:00Z}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/nest-wire-package-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
limit() { timeout --kill-after=10 "$@"; }
fail() { echo "package test: $*" >&2; exit 1; }

echo "--- npm pack (into $work)"
tarball="$work/$(cd "$repo" && limit 300 npm pack --silent --pack-destination "$work" | tail -n 1)"
[ -f "$tarball" ] || fail "npm pack wrote no tarball"

echo "--- tarball contents"
tar -tzf "$tarball" > "$work/files.txt"
for f in package/LICENSE package/README.md package/package.json package/dist/cjs/package.json \
         package/dist/esm/index.js package/dist/esm/index.d.ts package/dist/cjs/index.js package/dist/cjs/index.d.ts \
         package/dist/esm/terminus/index.js package/dist/cjs/terminus/index.js; do
  grep -qx "$f" "$work/files.txt" || fail "$f missing from the tarball"
done
if grep -E '\.map$|\.tsbuildinfo$|^package/(lib|test|sample-app|bench|scripts)/' "$work/files.txt"; then
  fail "the tarball ships files it should not (above)"
fi
tar -xzf "$tarball" -C "$work" package/package.json
node - "$work/package/package.json" <<'JS'
const pkg = require(process.argv[2]);
const problems = [];
for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) if (pkg.scripts?.[s]) problems.push(`install-time script "${s}"`);
if (Object.keys(pkg.dependencies ?? {}).join() !== 'msgpackr') problems.push(`dependencies ${JSON.stringify(pkg.dependencies)}`);
for (const p of ['@nestjs/common', '@nestjs/microservices', 'rxjs']) if (!pkg.peerDependencies?.[p]) problems.push(`no peer ${p}`);
if (!pkg.exports?.['./package.json']) problems.push('./package.json not exported');
if (!pkg.license || !pkg.repository || !pkg.homepage || !pkg.bugs) problems.push('license/repository/homepage/bugs missing');
if (problems.length) { console.error('package.json in the tarball:', problems.join('; ')); process.exit(1); }
JS
(cd "$repo" && node scripts/entries.mjs --check)
tar -xzf "$tarball" -C "$work" package/dist
node --input-type=module - "$repo" "$work/package" <<'JS'
// Every entry point whose source exists is in the tarball, both builds with their types; and the
// built code imports no package that is not a dependency or peer (e.g. @nestjs/core, reflect-metadata).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
const [repo, pkgDir] = process.argv.slice(2);
const { ENTRY_POINTS, builtPath } = await import(join(repo, 'scripts/entry-points.mjs'));
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const problems = [];
for (const { subpath, source } of ENTRY_POINTS) {
  if (!existsSync(join(repo, source))) {
    console.log(`    entry ${subpath}: no ${source} yet, skipped`);
    continue;
  }
  for (const build of ['esm', 'cjs']) for (const ext of ['.js', '.d.ts']) {
    const f = `dist/${build}/${builtPath(source)}${ext}`;
    if (!existsSync(join(pkgDir, f))) problems.push(`${subpath}: ${f} missing`);
  }
}
const allowed = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
const walk = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
for (const file of walk(join(pkgDir, 'dist')).filter((f) => f.endsWith('.js'))) {
  for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:from\s+|require\()['"]([^'"./][^'"]*)['"]/g)) {
    if (spec.startsWith('node:')) continue;
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    if (!allowed.has(name)) problems.push(`${file.slice(pkgDir.length + 1)} imports ${spec}, not a dependency or peer`);
  }
}
if (problems.length) { console.error(problems.join('\n')); process.exit(1); }
JS

for app in esm-nest12 cjs-nest11; do
  echo "--- $app: install (its own Nest from the registry + the tarball)"
  dir="$work/$app"
  cp -R "$repo/test/package/$app" "$dir"
  cp -R "$repo/test/package/app/src" "$dir/src"
  # --before: the apps' dependency trees as the registry had them on that day, so a release
  # published minutes ago (whose own dependencies may not be visible everywhere yet) cannot
  # break this test; the tarball is local and unaffected.
  (cd "$dir" && limit 600 npm install --no-audit --no-fund --no-package-lock --loglevel=error \
    --before="$APPS_REGISTRY_DATE" "$tarball")
  # A transport is a plugin: the app's Nest, rxjs and msgpackr are the only copies.
  [ ! -e "$dir/node_modules/nest-wire/node_modules" ] ||
    fail "$app: npm nested packages under nest-wire: $(ls "$dir/node_modules/nest-wire/node_modules")"
  echo "    $(cd "$dir" && node -p "['@nestjs/core','@nestjs/microservices','typescript'].map((p) => p + ' ' + require('./node_modules/' + p + '/package.json').version).join(', ')")"
  (cd "$dir" && node -e "require('nest-wire/package.json')") || fail "$app: nest-wire/package.json not resolvable"
  echo "--- $app: tsc"
  (cd "$dir" && limit 300 ./node_modules/.bin/tsc -p tsconfig.json)
  echo "--- $app: run"
  (cd "$dir" && limit 120 node dist/main.js)
  if [ -d "$dir/test" ]; then
    echo "--- $app: jest (CommonJS)"
    (cd "$dir" && limit 300 ./node_modules/.bin/jest --ci)
  fi
done
echo "--- package test passed"
