// A small rule set kept clean (`npm run lint`, run by .ci/run): ESLint's and typescript-eslint's
// recommended rules, without type information so that it runs in seconds.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // A leading underscore marks a parameter or binding kept for its position.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },
  // tsc resolves names in TypeScript; no-undef would only repeat it, without the types' globals.
  { files: ['**/*.ts'], rules: { 'no-undef': 'off' } },
  // Tests read JSON whose shape is another program's (OpenClaw's config, its gateway's replies).
  { files: ['test/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  // The dashboard's script runs in the browser.
  { files: ['daemon/ui/**/*.js'], languageOptions: { globals: globals.browser } },
);
