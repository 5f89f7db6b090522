// `meshbpf status` exit codes (issue 15), like `systemctl status`: 0 loaded and
// attached, 2 loaded with problems, 3 not loaded, 1 when it cannot tell.
import { linkDetach, objGet, closeFd } from '../../src/sys/libbpf.js';
import { pinPaths } from '../../src/maps/pinned.js';
import { rmSync } from 'node:fs';
import { cli, kernelSuite, tempDir } from '../helpers/kernel.js';

const state = tempDir();
const env = { MESHBPF_STATE_DIR: state };
const { ktest, topo } = kernelSuite('status exit code tests', {
  pods: [
    { name: 'a', v4: '198.18.3.1/24' },
    { name: 'b', v4: '198.18.3.2/24' },
  ],
  teardown: () => rmSync(state, { recursive: true, force: true }),
});

ktest('status: 3 when nothing is loaded, in both output formats', (t) => {
  for (const o of ['table', 'json']) {
    const r = cli(['status', '--pin-dir', `${topo!.pinDir}-none`, '-o', o], { env });
    t.is(r.code, 3, r.stderr);
    if (o === 'table') t.regex(r.stdout, /^meshbpf is not loaded at /);
    else t.false((JSON.parse(r.stdout) as { loaded: boolean }).loaded);
  }
});

ktest('status: 0 when loaded and attached', (t) => {
  const r = cli(['status', '--pin-dir', topo!.pinDir, '-o', 'json'], { env });
  t.is(r.code, 0, r.stderr);
  t.deepEqual((JSON.parse(r.stdout) as { problems: string[] }).problems, []);
});

ktest('status: 1 when it cannot tell (bad usage)', (t) => {
  t.is(cli(['status', '--pin-dir', topo!.pinDir, '-o', 'yaml'], { env }).code, 1);
});

ktest('status: 2 when loaded but broken (sockops link detached behind its back)', (t) => {
  const fd = objGet(pinPaths(topo!.pinDir).sockopsLink);
  try {
    linkDetach(fd);
  } finally {
    closeFd(fd);
  }
  const r = cli(['status', '--pin-dir', topo!.pinDir], { env });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stdout, /problems:\n {2}- (the sockops link was detached|sockops is not attached)/);
});
