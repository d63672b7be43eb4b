// Copies the Espruino bundle of @fieldhub/slim into ./modules, where the espruino CLI looks for `require`d modules
// when it uploads main.js (EspruinoTools' localModules: modules/<name>.js), so uploading needs no internet for it.
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = fileURLToPath(import.meta.resolve('@fieldhub/slim/espruino/fieldhub-slim.min.js'));
const target = fileURLToPath(new URL('./modules/fieldhub-slim.js', import.meta.url));
mkdirSync(new URL('./modules/', import.meta.url), { recursive: true });
copyFileSync(bundle, target);
console.log(`copied ${bundle} -> ${target}`);
