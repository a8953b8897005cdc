/**
 * npm run build: type declarations from tsc, JavaScript from esbuild.
 *
 * The CLI, the owner thread and the client library are bundled, each an entry
 * point; code the CLI and the library share and code loaded on demand (login,
 * dev, the HTTP side, the owner's upstream calls) become chunks in dist/chunks. One file instead of dozens per thread roughly
 * halved the time from start to ready (see README, Performance): on Node 20
 * the ES module loader pays for every file it resolves and reads.
 *
 * piscina is bundled too, but starts its worker from a file beside its own
 * code (`resolve(__dirname, 'worker.js')`): that one line is pointed back at
 * node_modules/piscina/dist/worker.js, which runs unbundled as before.
 *
 * Kept external (loaded from node_modules as they are): what only some
 * commands load and that is heavy or reads files relative
 *   to itself: prom-client (first scrape), undici (first upstream call),
 *   pino-pretty (a terminal), oidc-provider, open, ora, playwright-core.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

/** piscina's worker path, from the bundle back to piscina's own directory. */
const piscinaWorkerPath = {
  name: 'piscina-worker-path',
  setup(b) {
    b.onLoad({ filter: /[\\/]piscina[\\/]dist[\\/]index\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const line = "(0, node_path_1.resolve)(__dirname, 'worker.js')";
      if (!source.includes(line)) throw new Error(`${args.path}: the worker path line changed; update scripts/build.mjs`);
      return { contents: source.replace(line, "(0, node_path_1.join)((0, node_path_1.dirname)(require.resolve('piscina')), 'worker.js')"), loader: 'js' };
    });
  },
};

rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--emitDeclarationOnly'], { stdio: 'inherit' });

const shared = {
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  legalComments: 'linked',
  plugins: [piscinaWorkerPath],
  external: ['prom-client', 'undici', 'pino-pretty', 'oidc-provider', 'open', 'ora', 'playwright-core'],
  // CommonJS dependencies in an ES module bundle still call require() and read __dirname.
  banner: {
    js: [
      "import { createRequire as __tokendCreateRequire } from 'node:module';",
      "import { dirname as __tokendDirname } from 'node:path';",
      "import { fileURLToPath as __tokendFileURLToPath } from 'node:url';",
      'const require = __tokendCreateRequire(import.meta.url);',
      'const __filename = __tokendFileURLToPath(import.meta.url);',
      'const __dirname = __tokendDirname(__filename);',
    ].join('\n'),
  },
  logLevel: 'warning',
};
// Every chunk sits one directory below dist/, as the entries do, so a path
// relative to import.meta.url ('../owner/thread.js') means the same in each.
await build({
  ...shared,
  entryPoints: { 'cli/main': 'src/cli/main.ts', 'client/index': 'src/client/index.ts' },
  chunkNames: 'chunks/[name]-[hash]',
});
// The owner thread is built on its own: sharing chunks with the main thread
// made it load 9 files at start instead of 1 (its first token came ~13 ms
// later); what both threads use is simply in both.
await build({
  ...shared,
  entryPoints: { 'owner/thread': 'src/owner/thread.ts' },
  chunkNames: 'chunks/owner-[name]-[hash]',
});
chmodSync('dist/cli/main.js', 0o755);
