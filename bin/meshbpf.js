#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/ after `npm run build`.
import('../dist/src/cli/main.js')
  .then((m) => m.main(process.argv))
  .catch((err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
      console.error('meshbpf: not built yet; run `npm run build` (or scripts/setup.sh) first');
    } else {
      console.error(`meshbpf: ${err && err.message ? err.message : err}`);
    }
    process.exit(1);
  });
