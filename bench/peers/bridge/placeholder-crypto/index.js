'use strict';
// Stand-in for @matrix-org/matrix-sdk-crypto-nodejs (see ../../README.md). The real package's
// install script downloads a native library from GitHub, which cannot be reached here.
// @vector-im/matrix-bot-sdk requires this module when it loads but only uses it for end-to-end
// encryption, which the benchmark never enables. Every export, and every property of one
// (OlmMachine.initialize, ...), can be looked up, so loading succeeds; calling or
// constructing any of them throws.
function unavailable(name) {
  const fail = () => {
    throw new Error(`@matrix-org/matrix-sdk-crypto-nodejs: ${name} is not available in the benchmark (placeholder package)`);
  };
  return new Proxy(function placeholder() {}, {
    apply: fail,
    construct: fail,
    get(_target, prop) {
      if (typeof prop !== 'string' || prop === 'then' || prop === 'prototype') return undefined;
      return unavailable(`${name}.${prop}`);
    },
  });
}
module.exports = new Proxy({}, {
  get(_target, prop) {
    // Leave module-interop probes (__esModule, then, default, symbols) undefined.
    if (typeof prop !== 'string' || prop === '__esModule' || prop === 'then' || prop === 'default') return undefined;
    return unavailable(prop);
  },
});
