// `meshbpf exclude`: destinations that always keep the normal stack, whatever
// the control plane says (see src/maps/exclude.ts).
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { describeExclusion, listExclusions, openExclusions } from '../maps/exclude.js';
import { hostPort } from '../maps/dump.js';
import { formatIp, parseIp, parsePort } from '../net/ip.js';
import { json, outputOption, pinDirOption, print } from './common.js';

export function registerExclude(program: Command): void {
  const ex = program.command('exclude').description('destinations (server ip:port) that are never bypassed: splice(2) readers, or anything you want on the normal stack');
  ex.command('add <ip> <port>')
    .description('keep every new connection to ip:port on the normal stack (connections already bypassed stay so until they close)')
    .addOption(pinDirOption())
    .addHelpText('after', '\nExamples:\n  meshbpf exclude add 10.244.1.5 8080     # a Go proxy that splices (io.Copy)\n  meshbpf exclude add fd00::5 443')
    .action((ipText: string, portText: string, o) => {
      const ip = formatIp(parseIp(ipText).bytes);
      const port = parsePort(portText);
      const m = openExclusions(o.pinDir);
      try {
        const had = m.get({ ip, port });
        m.set({ ip, port }, { reason: 'operator', pid: 0, hits: had?.hits ?? 0n, firstNs: 0n, comm: '' });
      } finally {
        m.close();
      }
      print(`excluded ${hostPort(ip, port)}: new connections keep the normal stack`);
    });
  ex.command('del <ip> <port>')
    .description('allow bypass for ip:port again (also clears an exclusion the splice guard made: do it once that server no longer splices)')
    .addOption(pinDirOption())
    .action((ipText: string, portText: string, o) => {
      const ip = formatIp(parseIp(ipText).bytes);
      const port = parsePort(portText);
      const m = openExclusions(o.pinDir);
      try {
        if (!m.delete({ ip, port })) throw new UserError(`${hostPort(ip, port)} is not excluded`);
      } finally {
        m.close();
      }
      print(`${hostPort(ip, port)} no longer excluded`);
    });
  ex.command('list')
    .description('the excluded destinations and why')
    .addOption(pinDirOption())
    .addOption(outputOption())
    .action((o) => {
      const m = openExclusions(o.pinDir, { readOnly: true });
      try {
        const all = listExclusions(m);
        if (o.output === 'json') print(json(all.map((e) => ({ ...e, hits: Number(e.hits), firstNs: e.firstNs.toString() }))));
        else print(all.length ? all.map(describeExclusion).join('\n') : 'no excluded destinations');
      } finally {
        m.close();
      }
    });
}
