// @ts-check
/**
 * Lint: typescript-eslint with type information (strict about promises and
 * `any` in src/), the switch exhaustiveness check, and the architecture's
 * import boundaries (which folder may load what) in eslint.boundaries.mjs.
 */
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { boundaries } from './eslint.boundaries.mjs';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/*.mjs', 'scripts/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['it', 'describe', 'test', 'before', 'after', 'beforeEach', 'afterEach', 'suite'] },
          ],
        },
      ],
      // Implementations of promise-returning interfaces (oidc-provider's adapter, the RPC surface) need no await.
      '@typescript-eslint/require-await': 'off',
      // Control characters are what several patterns exist to find (token syntax, scrubbing).
      'no-control-regex': 'off',
    },
  },
  {
    // Tests read JSON answers as `any` on purpose: the assertions are the type check.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
  ...boundaries,
);
