// Lint: typescript-eslint's type-checked recommended rules on src/, test/,
// bench/ and the console's TSX (console/src, browser globals, its own tsconfig;
// plain JavaScript is checked without types), and Prettier's formatting (npm run
// lint runs both).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tap/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  { ignores: ['console/src/**'], languageOptions: { globals: { ...globals.node } } },
  { files: ['console/src/**'], languageOptions: { globals: { ...globals.browser } } },
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // A promise nobody awaits loses its rejection: every one is awaited, returned or marked `void`.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: '@tapjs/test', name: ['test', 'todo', 'skip', 'only'] }],
        },
      ],
      // async without await is how a function keeps one error channel (a rejection, never a throw).
      '@typescript-eslint/require-await': 'off',
      'no-console': ['error'],
    },
  },
  { files: ['bench/**', 'test/**', 'bin/**'], rules: { 'no-console': 'off' } },
  { files: ['**/*.mjs', '**/*.js'], ...tseslint.configs.disableTypeChecked },
);
