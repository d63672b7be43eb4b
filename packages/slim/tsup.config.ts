import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', 'hosts/node': 'src/hosts/node.ts' },
  format: ['esm', 'cjs'],
  // The declarations of the Node host (`@fieldhub/slim/node`) name Node types; tsconfig.json keeps `types: []` so
  // that the typecheck of the portable sources never sees Node.
  dts: { compilerOptions: { types: ['node'] } },
  sourcemap: true,
  clean: true,
  target: 'es2020',
});
