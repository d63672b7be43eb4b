// The slim bundles (docs/slim.md, "Bundles"). `npm run build` runs tsup (the npm ESM/CJS build for Node) first,
// then this config, then the gates (scripts/).
//
// - dist/moddable/: `fieldhub-slim.js`, one ES2020 module (client, ECMA-419 host, the protocol's portable
//   hmacSha256) and `manifest.json` for Moddable's mcconfig.
// - dist/espruino/: `fieldhub-slim.js`, one script for Espruino's `require` (assigns `exports.createClient` and
//   `exports.createEspruinoHost`), lowered by Babel with the configuration verified on Espruino 2v29
//   (embedded-runtimes.md §1.1), and `fieldhub-slim.min.js`, the same minified: what a board loads. Also
//   `fieldhub-slim.modules.json`, each module's share of the script, which the size budget prints.
//
// TypeScript is transpiled file by file (typescript.transpileModule: no type check here, `npm run typecheck` does
// that) and `@fieldhub/protocol` is inlined from its sources, so both bundles are lowered from the same code and
// rollup tree-shakes the protocol down to the functions the client uses.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { babel } from '@rollup/plugin-babel';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import terser from '@rollup/plugin-terser';
import { tokenizer } from 'acorn';
import ts from 'typescript';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const { version } = JSON.parse(readFileSync(here('./package.json'), 'utf8'));
const protocolSource = here('../protocol/src/index.ts');

/** Transpiles TypeScript modules to `target` and resolves `@fieldhub/protocol` to its sources. */
function transpile(target) {
  return {
    name: 'fieldhub-transpile',
    resolveId(source) {
      return source === '@fieldhub/protocol' ? protocolSource : null;
    },
    transform(code, id) {
      if (!id.endsWith('.ts')) return null;
      const output = ts.transpileModule(code, {
        fileName: id,
        compilerOptions: { target, module: ts.ModuleKind.ESNext, sourceMap: true, isolatedModules: true },
      });
      const transpiled = output.outputText
        .replace(/\n\/\/# sourceMappingURL=.*$/, '\n')
        // A module-level `const TABLE = (() => {...})()` builds a constant; both packages declare
        // `sideEffects: false`, so mark it pure and let rollup drop it when nothing reads the constant.
        .replace(/^((?:export )?(?:const|let|var) [\w$]+ = )(\((?:\(\) =>|function \(\)))/gm, '$1/*#__PURE__*/ $2');
      return { code: transpiled, map: output.sourceMapText };
    },
  };
}

/** Any import left unresolved would be a runtime `require`/`import` on the board: fail instead of warning. */
function onwarn(warning, warn) {
  if (
    warning.code === 'UNRESOLVED_IMPORT' ||
    warning.code === 'MISSING_EXPORT' ||
    warning.code === 'CIRCULAR_DEPENDENCY'
  ) {
    throw new Error(`slim bundle: ${warning.message}`);
  }
  warn(warning);
}

/** Every slim and protocol module is free of load-time side effects (both packages say `sideEffects: false`). */
const treeshake = { moduleSideEffects: false, propertyReadSideEffects: false };

/** Moddable's manifest: the bundle as module `fieldhub-slim`, plus the SDK manifests for what the host uses. */
const moddableManifest = {
  include: [
    // ECMA-419 IO (embedded:io/socket/tcp) and the TLS socket class (embedded:io/socket/tcp/tls), which pulls in
    // modules/crypt/tls_419.json: the `crypt` Digest and the `hmac` module the glue hands to createEcma419Host.
    '$(MODDABLE)/modules/io/manifest.json',
    '$(MODDABLE)/examples/io/tcp/tlssocket/manifest.json',
  ],
  modules: { 'fieldhub-slim': './fieldhub-slim' },
  // Preloaded modules live in flash and are frozen: the bundle keeps no module-level mutable state.
  preload: ['fieldhub-slim'],
};

function emitManifest() {
  return {
    name: 'fieldhub-moddable-manifest',
    generateBundle() {
      this.emitFile({
        type: 'asset',
        fileName: 'manifest.json',
        source: `${JSON.stringify(moddableManifest, null, 2)}\n`,
      });
    },
  };
}

/** Bytes of a module's code without comments and whitespace: its tokens (names are not shortened, so this runs
 * above the minified share, but it ranks the modules as minifying does). */
function tokenBytes(code) {
  let bytes = 0;
  for (const token of tokenizer(code, { ecmaVersion: 'latest', allowReturnOutsideFunction: true })) {
    bytes += token.end - token.start;
  }
  return bytes;
}

/** Writes what each module brings to the Espruino script (after tree-shaking and lowering) for the size budget. */
function moduleSizes() {
  return {
    name: 'fieldhub-module-sizes',
    generateBundle(_options, bundle) {
      const sizes = {};
      for (const file of Object.values(bundle)) {
        if (file.type !== 'chunk') continue;
        for (const [id, module] of Object.entries(file.modules)) {
          if (module.code) sizes[id.replace(here('../'), 'packages/').replace(/\0/g, '')] = tokenBytes(module.code);
        }
      }
      this.emitFile({
        type: 'asset',
        fileName: 'fieldhub-slim.modules.json',
        source: `${JSON.stringify(sizes, null, 2)}\n`,
      });
    },
  };
}

/** The Babel configuration verified on Espruino (embedded-runtimes.md §1.1): keeps what Espruino runs natively
 * (classes, arrows, for-of over arrays, shorthand properties, `??`) and lowers the rest. */
const espruinoBabel = babel({
  babelHelpers: 'bundled',
  babelrc: false,
  configFile: false,
  extensions: ['.ts', '.js'],
  presets: [
    [
      '@babel/preset-env',
      {
        targets: 'ie 11',
        modules: false,
        loose: true,
        exclude: [
          'transform-classes',
          'transform-arrow-functions',
          'transform-for-of',
          'transform-typeof-symbol',
          'transform-shorthand-properties',
          'transform-nullish-coalescing-operator',
        ],
      },
    ],
  ],
});

const espruinoOutput = {
  format: 'cjs',
  // Espruino's module loader wraps the file in a function and passes `exports`: nothing else is needed.
  esModule: false,
  strict: false,
  freeze: false, // Object.freeze does not exist on Espruino
  externalLiveBindings: false,
  generatedCode: { preset: 'es5', symbols: false },
};

export default [
  {
    input: here('./src/bundles/moddable.ts'),
    treeshake,
    onwarn,
    plugins: [transpile(ts.ScriptTarget.ES2020), nodeResolve({ extensions: ['.ts', '.js'] }), emitManifest()],
    output: {
      file: here('./dist/moddable/fieldhub-slim.js'),
      format: 'es',
      generatedCode: { preset: 'es2015', symbols: false },
      freeze: false,
      banner: `/* @fieldhub/slim ${version}: IoT Hub device client for Moddable XS (ES2020 module). MIT */`,
    },
  },
  {
    input: here('./src/bundles/espruino.ts'),
    treeshake,
    onwarn,
    plugins: [transpile(ts.ScriptTarget.ES2020), nodeResolve({ extensions: ['.ts', '.js'] }), espruinoBabel],
    output: [
      {
        ...espruinoOutput,
        file: here('./dist/espruino/fieldhub-slim.js'),
        banner: `/* @fieldhub/slim ${version}: IoT Hub device client for Espruino (lowered, unminified). MIT */`,
        plugins: [moduleSizes()],
      },
      {
        ...espruinoOutput,
        file: here('./dist/espruino/fieldhub-slim.min.js'),
        plugins: [
          terser({
            // ecma 5: terser must not introduce syntax of its own (arrows, shorthand, `**`, templates); what the
            // lowered input already has (classes, arrows) is kept as is.
            ecma: 5,
            toplevel: true,
            compress: { passes: 3, arrows: false, unsafe_arrows: false },
            // `of` is reserved on Espruino (`var of` is a syntax error there, EspruinoDocs Features.md).
            mangle: { toplevel: true, reserved: ['of'] },
            format: { ascii_only: true, comments: false },
          }),
        ],
      },
    ],
  },
];
