// A full garbage collection on request. A large sync (a 50 MiB snapshot) leaves
// its parse and compile working state as garbage that V8 collects late, on top
// of what the next stage allocates; one collection between stages keeps the
// peak RSS down (tens of ms; bench/report/MEMORY.md) and lets an idle agent
// give the memory back.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
export const collectGarbage = runInNewContext('gc') as () => void;

/** Collect only for a large sync (tens of ms each; a small one has little garbage to give back): entries... */
export const LARGE_SYNC = 20_000;
/** ...or the bytes of a snapshot file (20,000 entries are about 5 MiB of JSON). */
export const LARGE_FILE = 8 * 1024 * 1024;

/** The compiler's hook for the sync paths: collect its listeners' garbage before the output of a large snapshot. */
export const collectBeforeOutput = (addresses: number): void => {
  if (addresses > LARGE_SYNC) collectGarbage();
};
