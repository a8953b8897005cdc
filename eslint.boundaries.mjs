// @ts-check
/**
 * The architecture as import rules. The owner thread's code (src/state-worker)
 * is loaded only by the owner thread: the daemon's main thread and the HTTP
 * layer reach it through src/contract.ts, as types. Only oauth.ts (the owner),
 * the client library and the dev login talk HTTP to the outside (undici).
 */
const ownerCode = {
  regex: '(^|/)state-worker/',
  message: 'the main thread reaches the owner thread through src/contract.ts (import type) only',
  allowTypeImports: true,
};
const undici = { name: 'undici', message: 'only the owner (oauth.ts), the client library and the dev login talk to the outside', allowTypeImports: true };

export const boundaries = [
  {
    files: [
      'src/http/**/*.ts',
      'src/main/{daemon,owner-handle,owner-thread,metrics,cli,commands,serve,config,signals,preamble,idle-trim,http-stats,status,client-commands}.ts',
    ],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: [ownerCode], paths: [undici] }] },
  },
  {
    files: ['src/**/*.ts'],
    ignores: [
      'src/state-worker/**',
      'src/client/**',
      'src/dev/**',
      'src/http/**',
      'src/main/{daemon,owner-handle,owner-thread,metrics,cli,commands,serve,config,signals,preamble,idle-trim,http-stats,status,client-commands}.ts',
    ],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { paths: [undici] }] },
  },
];
