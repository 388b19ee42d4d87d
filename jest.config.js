/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  rootDir: '.',
  roots: ['<rootDir>/test'],
  testRegex: '.*\\.spec\\.ts$',
  // Floods and soaks run with `npm run soak`, which clears this pattern: `npm test` stays fast.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/soak/'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  // Relative imports carry `.js` (nodenext); jest resolves the `.ts` source.
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    '^nest-wire$': '<rootDir>/lib/index.ts',
    '^nest-wire/terminus$': '<rootDir>/lib/terminus/index.ts',
    '^nest-wire/opentelemetry$': '<rootDir>/lib/opentelemetry/index.ts',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: '<rootDir>/tsconfig.json' }],
  },
  testTimeout: 30000,
  // One worker per core. Jest's default is one fewer, which on a 2-core machine runs every
  // file in a single worker; much of a file's time is spent waiting on sockets and timers,
  // so a second worker takes about a third off `npm test` there (measured on a loaded machine).
  maxWorkers: '100%',
};
