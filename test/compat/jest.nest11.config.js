// `npm run test:nest11`: the e2e suite against Nest 11. The project's own devDependencies
// are Nest 12; here every `@nestjs/*`, `rxjs` and `reflect-metadata` import — from lib/,
// the tests, and Nest itself — resolves to test/compat/nest11/node_modules, so exactly one
// copy of each is loaded (test/compat/nest11.spec.ts checks it is Nest 11's).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import base from '../../jest.config.js';

const here = dirname(fileURLToPath(import.meta.url));
if (!existsSync(join(here, 'nest11/node_modules/@nestjs/microservices'))) {
  throw new Error('Nest 11 is not installed: run `npm ci --prefix test/compat/nest11` first');
}
const NEST11 = '<rootDir>/test/compat/nest11/node_modules';

/** @type {import('jest').Config} */
export default {
  ...base,
  rootDir: '../..',
  roots: ['<rootDir>/test/e2e', '<rootDir>/test/compat'],
  // The README's payload-type table is what Nest 12's TCP transport delivers (the project's own
  // devDependency); Nest 11's TCP server throws on an unserializable response instead of logging it,
  // so that table's "Nest TCP" column is checked against Nest 12 only. nest-wire's own type mapping
  // runs under Nest 11 too (test/protocol/payload-types.spec.ts needs no Nest; test/e2e/foreign-peer-types.spec.ts).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/e2e/payload-types.spec.ts'],
  moduleNameMapper: {
    '^@nestjs/([a-z-]+)$': `${NEST11}/@nestjs/$1`,
    '^@nestjs/([a-z-]+)/(.+)$': `${NEST11}/@nestjs/$1/$2`,
    '^rxjs$': `${NEST11}/rxjs`,
    '^rxjs/(.+)$': `${NEST11}/rxjs/$1`,
    '^reflect-metadata$': `${NEST11}/reflect-metadata`,
    ...base.moduleNameMapper,
  },
};
