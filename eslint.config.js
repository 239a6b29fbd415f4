// Lint: typescript-eslint recommended rules on src/, test/ and bench/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tap/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      'no-console': ['error'],
    },
  },
  { files: ['bench/**', 'test/**', 'bin/**'], rules: { 'no-console': 'off' } },
  // bench/*.mjs is plain JavaScript run by Node: the Node globals it uses beyond the list above.
  { files: ['bench/**/*.mjs'], languageOptions: { globals: { performance: 'readonly', fetch: 'readonly', URLSearchParams: 'readonly' } } },
);
