// A full garbage collection on request. A large sync (a 50 MiB snapshot) leaves
// its parse and compile working state as garbage that V8 collects late, on top
// of what the next stage allocates; one collection between stages keeps the
// peak RSS down (tens of ms; bench/report/MEMORY.md) and lets an idle agent
// give the memory back.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
export const collectGarbage = runInNewContext('gc') as () => void;
