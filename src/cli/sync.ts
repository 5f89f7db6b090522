// `meshbpf sync`: one-shot apply of an xDS snapshot file to the kernel maps.
import type { Command } from 'commander';
import { DEFAULT_MAX_FILE_BYTES, loadSnapshotFile } from '../xds/file.js';
import { compileCheckedInto } from '../policy/index.js';
import { DesiredEncoder } from '../maps/plan.js';
import { openMaps } from '../maps/pinned.js';
import { syncMaps } from '../maps/sync.js';
import { writeExclusions, writeRules } from '../maps/state.js';
import { UserError, XdsParseError } from '../errors.js';
import { addLocalityOptions, localityFrom, sidecarFrom } from './locality.js';
import { applySidecar, SIDECAR_NEEDS_COOKIE } from '../maps/sidecar.js';
import { probeFeatures } from '../loader/features.js';
import { intArg, json, outputOption, pinDirOption, print } from './common.js';
import type { XdsSnapshot } from '../xds/types.js';
import { collectBeforeOutput, collectGarbage, LARGE_SYNC } from '../gc.js';

export function registerSync(program: Command): void {
  addLocalityOptions(
    program
      .command('sync')
      .description('apply an xDS snapshot (Envoy config_dump JSON/YAML, a resource list, or an Istio WDS resource list) to the maps once: diff, safe order, batched')
      .requiredOption('--xds-file <file>', 'config_dump or resource list (JSON or YAML); a list of istio.workload.Address / istio.security.Authorization is read as WDS (needs --node-name)')
      .option('--xds-file-max-mb <n>', `size limit of --xds-file (default ${DEFAULT_MAX_FILE_BYTES / 1024 / 1024})`, intArg('--xds-file-max-mb', 1, 4096))
      .addOption(pinDirOption())
      .addOption(outputOption()),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  meshbpf sync --xds-file examples/snapshot.yaml --pod-cidr 198.18.0.0/24\n  istioctl proxy-config all POD -o json > dump.json && meshbpf sync --xds-file dump.json --pod-cidr 10.244.1.0/24 --pod-cidr fd00:10:244:1::/64',
    )
    .action((o) => {
      const locality = localityFrom(o);
      const sidecar = sidecarFrom(o);
      let snapshot: XdsSnapshot | undefined;
      try {
        snapshot = loadSnapshotFile(o.xdsFile, (o.xdsFileMaxMb ?? DEFAULT_MAX_FILE_BYTES / 1024 / 1024) * 1024 * 1024).snapshot;
      } catch (e) {
        // each reason already names the file
        if (e instanceof XdsParseError) throw new UserError(`${e.reasons[0] ?? e.message}${e.total > 1 ? ` (and ${e.total - 1} more)` : ''}`);
        throw e;
      }
      // One compile: it validates as it goes (compiling again after validate() doubled a large sync).
      // Its entries are encoded as they are built: no object per entry is kept (a large sync's peak).
      const encoder = new DesiredEncoder();
      const checked = compileCheckedInto(snapshot, locality, encoder, { beforeOutput: collectBeforeOutput });
      if ('error' in checked) throw new UserError(`${o.xdsFile}: rejected: ${checked.error}`);
      const desired = checked.state;
      const entries = encoder.entries;
      // The document and the compiler's working state are garbage now; collected before
      // the sync allocates (V8 would collect them late: a large sync's peak RSS).
      snapshot = undefined;
      if (entries.endpoints + entries.policies > LARGE_SYNC) collectGarbage();
      const encoded = encoder.done();
      if (sidecar && !probeFeatures().netnsCookie) throw new UserError(SIDECAR_NEEDS_COOKIE); // before any write
      const maps = openMaps(o.pinDir);
      try {
        // Captured pods first: a service VIP must never be resolved for a pod whose sidecar is not known yet.
        const sc = applySidecar(maps, sidecar);
        const r = syncMaps(maps, desired, undefined, encoded);
        writeRules(o.pinDir, desired.rules);
        writeExclusions(o.pinDir, locality.exclude);
        const summary = {
          ...(desired.wdsServices ? { wdsServices: desired.wdsServices.length } : {}),
          endpoints: r.counts.endpoints,
          policies: r.counts.policies,
          services: r.counts.services ?? null,
          verdicts: { bypass: entries.bypass, proxy: entries.proxy },
          skipped: desired.skipped.length,
          ms: Math.round(r.ms.total * 10) / 10,
          locality,
          sidecar: sidecar ? { captured: sc.captured, ...sidecar.config } : null,
        };
        if (o.output === 'json') return print(json(summary));
        const c = (x: { added: number; changed: number; removed: number; unchanged: number }) => `+${x.added} ~${x.changed} -${x.removed} (=${x.unchanged})`;
        print(
          `synced ${o.xdsFile} in ${summary.ms} ms: endpoints ${c(r.counts.endpoints)}, policies ${c(r.counts.policies)}; ${summary.verdicts.bypass} bypass, ${summary.verdicts.proxy} proxy verdicts; ${summary.skipped} endpoints skipped; sidecar pairing ${sidecar ? `on for ${sc.captured} captured prefixes` : 'off'}`,
        );
      } finally {
        maps.close();
      }
    });
}
