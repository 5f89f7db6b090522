// Small-write experiments (filled in below). Returns nothing until implemented.
import type { Topology } from '../../src/topo/topology.js';
import type { MeshMaps } from '../../src/maps/pinned.js';
import type { Experiment } from '../lib/report.js';

export interface ExperimentCtx {
  topo: Topology;
  maps: MeshMaps;
  server: string;
  port: number;
  rrPort: number;
  mbrr: string;
  seconds: number;
  rrSeconds: number;
  rounds: number;
  log: (s: string) => void;
}

export async function runExperiments(_ctx: ExperimentCtx): Promise<Experiment[]> {
  return [];
}
