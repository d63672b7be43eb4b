// Copies the Moddable bundle of @fieldhub/slim (the ES2020 module and its manifest) into ./fieldhub-slim, which
// this example's manifest.json includes, so that `mcconfig` finds it without knowing where npm put the package.
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const target = new URL('./fieldhub-slim/', import.meta.url);
mkdirSync(target, { recursive: true });
for (const file of ['fieldhub-slim.js', 'manifest.json']) {
  const source = fileURLToPath(import.meta.resolve(`@fieldhub/slim/moddable/${file}`));
  copyFileSync(source, new URL(file, target));
  console.log(`copied ${source} -> ${fileURLToPath(new URL(file, target))}`);
}
