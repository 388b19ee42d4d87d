/**
 * The package's public entry points: one line each. `npm run entries` writes
 * `exports` and `typesVersions` of package.json from this list; `npm run build`
 * compiles all of lib/ twice (dist/esm, dist/cjs), so an entry needs no build change.
 *
 * `subpath` is what users import (`nest-wire/terminus`); `source` is its file under lib/.
 */
export const ENTRY_POINTS = [
  { subpath: '.', source: 'lib/index.ts' },
  { subpath: './terminus', source: 'lib/terminus/index.ts' },
  { subpath: './opentelemetry', source: 'lib/opentelemetry/index.ts' },
];

/** `lib/terminus/index.ts` → `terminus/index` (the path inside dist/esm and dist/cjs, no extension). */
export function builtPath(source) {
  return source.replace(/^lib\//, '').replace(/\.ts$/, '');
}

/** The `exports` map: `import` → ESM build, `require` → CJS build, each with its own types. */
export function exportsField(entries = ENTRY_POINTS) {
  const map = {};
  for (const { subpath, source } of entries) {
    const path = builtPath(source);
    map[subpath] = {
      import: { types: `./dist/esm/${path}.d.ts`, default: `./dist/esm/${path}.js` },
      require: { types: `./dist/cjs/${path}.d.ts`, default: `./dist/cjs/${path}.js` },
    };
  }
  map['./package.json'] = './package.json';
  return map;
}

/** `moduleResolution: node` (node10) ignores `exports`; `typesVersions` maps the subpaths for it. */
export function typesVersionsField(entries = ENTRY_POINTS) {
  const paths = {};
  for (const { subpath, source } of entries) {
    if (subpath === '.') continue;
    paths[subpath.slice(2)] = [`./dist/cjs/${builtPath(source)}.d.ts`];
  }
  return { '*': paths };
}
