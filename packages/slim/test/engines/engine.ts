/**
 * What the engine runners share: the bundle to load, and a session the test drives.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ESPRUINO_MISSING } from '../../scripts/espruino-gate.mjs';
import type { NodeBridge } from './node-bridge';

/** A slim bundle as the build writes it. */
export interface Bundle {
  /** The file name engines report in stack traces. */
  readonly fileName: string;
  readonly code: string;
  /**
   * `module`: an ES module whose exports become `globalThis.slim` (the ES2020 bundle); `script`: a CommonJS-shaped
   * script assigning `exports.*` (the Espruino bundle), run after espruino-traits.js (Espruino's limits) and
   * `var exports = {}; var module = {exports};`.
   */
  readonly kind: 'module' | 'script';
}

/** One engine running bridge.js, shapes.js, a bundle and scenario.js, connected to a {@link NodeBridge}. */
export interface EngineSession {
  readonly bridge: NodeBridge;
  /** Stops the engine and destroys the bridge's sockets and timers. Idempotent. */
  dispose(): Promise<void>;
}

/** Options every runner takes. */
export interface EngineOptions {
  readonly bundle: Bundle;
  /** The hub's CA (PEM), for the test-process side of TLS. */
  readonly ca: string;
}

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));

/**
 * The engine-side scripts: bridge.js, shapes.js (runtime-shaped sockets over it), scenario.js, and
 * espruino-traits.js, Espruino's limits imposed on the engine before a `script` bundle (the Espruino one) runs.
 */
export const engineScripts = {
  bridge: readFileSync(here('./bridge.js'), 'utf8'),
  shapes: readFileSync(here('./shapes.js'), 'utf8'),
  // A function expression, called with the gate's list of what Espruino lacks.
  espruinoTraits: `${readFileSync(here('./espruino-traits.js'), 'utf8').trim().replace(/;$/, '')}(${JSON.stringify(ESPRUINO_MISSING)});`,
  scenario: readFileSync(here('./scenario.js'), 'utf8'),
} as const;

/** Run before a `script` bundle so its `exports.x = ...` assignments land somewhere (Espruino has `exports`). */
export const commonJsPrelude = 'var exports = {}; var module = { exports: exports };';
