// @ts-check
// The lint setup of Nest's own project template (typescript-eslint with type information,
// Prettier as a rule), with the rules this library relies on stated below.
import eslint from '@eslint/js';
import eslintPluginPrettierRecommended from 'eslint-plugin-prettier/recommended';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', 'node_modules/**', 'bench/results/**', 'test/compat/**/node_modules/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  eslintPluginPrettierRecommended,
  {
    languageOptions: {
      globals: { ...globals.node, ...globals.jest },
      sourceType: 'module',
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    rules: {
      // Frame types and flags arrive from the wire as plain numbers; comparing them with the
      // FrameType enum is exactly how they are validated, so this rule only adds casts.
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      // Unused parameters kept for an interface's shape are prefixed with `_`.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      // As in Nest's template: `any` is how Nest's own signatures (send<TResult = any>) are typed.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-floating-promises': 'warn',
      '@typescript-eslint/no-unsafe-argument': 'warn',
      // A caught value is `unknown`; passing it on as a rejection keeps what was thrown.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // Plain JavaScript (build scripts, jest configs, test peers) is not in a tsconfig: lint it without types.
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The CommonJS fixture app of the packaging test (test/package/pack-install.sh) must require().
    files: ['test/package/cjs-*/**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Tests assert on what Nest's `send<TResult = any>()`, supertest's `res.body` and jest's
    // `expect.any()` return: values typed `any` by those APIs. The library itself stays strict.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      // Async generators and async methods that implement an interface need no await.
      '@typescript-eslint/require-await': 'off',
    },
  },
);
