// The map syscalls BpfMap needs, behind one interface: the kernel's (libbpf,
// bound on first use) in production, an in-memory fake in unit tests, so the
// batch, fallback and iteration paths are tested without a kernel.
import { closeFd, mapDelete, mapDeleteBatch, mapInfo, mapLookup, mapNextKey, mapUpdate, mapUpdateBatch, numPossibleCpus, type MapInfo } from './libbpf.js';

export type { MapInfo };

export interface MapSyscalls {
  info(fd: number): MapInfo;
  /** true if found (value filled), false on ENOENT; throws BpfError otherwise */
  lookup(fd: number, key: Buffer, value: Buffer): boolean;
  update(fd: number, key: Buffer, value: Buffer, flags: number): void;
  /** true if it was there, false on ENOENT */
  delete(fd: number, key: Buffer): boolean;
  /** next key after `key` (null: the first) into `next`; false when there is none */
  nextKey(fd: number, key: Buffer | null, next: Buffer): boolean;
  /** applies `count` packed entries, returns how many; throws BatchError (with `applied`) */
  updateBatch(fd: number, keys: Buffer, values: Buffer, count: number): number;
  deleteBatch(fd: number, keys: Buffer, count: number): number;
  possibleCpus(): number;
  close(fd: number): void;
}

export const kernelMaps: MapSyscalls = {
  info: mapInfo,
  lookup: mapLookup,
  update: mapUpdate,
  delete: mapDelete,
  nextKey: mapNextKey,
  updateBatch: (fd, keys, values, count) => mapUpdateBatch(fd, keys, values, count),
  deleteBatch: mapDeleteBatch,
  possibleCpus: numPossibleCpus,
  close: closeFd,
};
