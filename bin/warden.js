#!/usr/bin/env node
// Runs the bundled CLI (npm run build writes dist/warden.js).
//
// Node 20 has no global `navigator` (Node 21 and later define one). Without it, pg's stream module
// decides at import whether it runs in Cloudflare Workers by constructing a web `Response`, which
// loads and instantiates undici: about 9 MB of RSS in every agent and router that never use it.
// Defining `navigator` the way later Node versions do answers that check without the detour. It has
// to happen before the bundle's imports are evaluated, hence the dynamic import below.
if (globalThis.navigator === undefined) {
  Object.defineProperty(globalThis, 'navigator', {
    value: Object.freeze({ userAgent: `Node.js/${process.versions.node.split('.')[0]}` }),
    configurable: true,
    writable: true,
    enumerable: false,
  });
}
await import('../dist/warden.js');
