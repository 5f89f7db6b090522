// `meshbpf inpod`: enroll pods of an Istio ambient node (istio-cni's in-pod
// capture) so that flows meshbpf bypasses skip ztunnel (see src/loader/inpod.ts).
import type { Command } from 'commander';
import { attachInpod, detachAllInpod, detachInpod, listInpod } from '../loader/inpod.js';
import { json, outputOption, pinDirOption, print } from './common.js';
import { UserError } from '../errors.js';
import { checkPrivileges } from '../loader/preflight.js';

export function registerInpod(program: Command): void {
  const ip = program.command('inpod').description('Istio ambient (in-pod capture): enroll pods so flows meshbpf bypasses skip ztunnel; only flows between two enrolled pods ever do');
  ip.command('attach <netns...>')
    .description("link meshbpf's sk_lookup program to each pod network namespace and record its addresses (again = refresh)")
    .addOption(pinDirOption())
    .addHelpText(
      'after',
      '\nA pod namespace is a file such as /var/run/netns/cni-<id> (containerd) or /proc/<pid>/ns/net.\n' +
        'Only flows that `policy explain` calls bypass, between two enrolled pods, skip ztunnel;\n' +
        "everything else keeps istio-cni's capture. Without meshbpf loaded nothing is skipped.\n" +
        'Enroll a pod before its servers listen (at pod start, as istio-cni does): listeners opened\n' +
        'earlier are not known to meshbpf, and flows to them keep the capture.\n\nExamples:\n  meshbpf inpod attach /var/run/netns/cni-1a2b3c /var/run/netns/cni-4d5e6f',
    )
    .action((nss: string[], o) => {
      checkPrivileges();
      for (const ns of nss) {
        const a = attachInpod(o.pinDir, ns);
        print(`enrolled ${a.netns} (netns cookie ${a.cookie}): addresses ${a.prefixes.join(', ')}`);
      }
    });
  ip.command('detach [netns...]')
    .description('remove the sk_lookup link and the addresses of these pods (--all: every enrolled pod)')
    .option('--all', 'every enrolled pod')
    .addOption(pinDirOption())
    .action((nss: string[], o) => {
      checkPrivileges();
      if (o.all) {
        const gone = detachAllInpod(o.pinDir);
        return print(gone.length ? `detached ${gone.length} pod namespace(s)` : 'no pod was enrolled');
      }
      if (!nss.length) throw new UserError('name the pod namespaces to detach, or use --all');
      for (const ns of nss) print(`detached ${detachInpod(o.pinDir, ns).netns}`);
    });
  ip.command('list')
    .description('the enrolled pod namespaces, their netns cookies and addresses')
    .addOption(pinDirOption())
    .addOption(outputOption())
    .action((o) => {
      const all = listInpod(o.pinDir);
      if (o.output === 'json') return print(json(all));
      print(all.length ? all.map((a) => `${a.netns}  ${a.cookie}  ${a.prefixes.join(' ')}`).join('\n') : 'no pod enrolled');
    });
}
