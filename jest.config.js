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
};
