// `node --import dist/test/helpers/hide-libbpf.js ...`: the process behaves as
// on a machine without libbpf. koffi.load of libbpf fails as dlopen would, and
// says so on stderr (HIDE-LIBBPF: ...) so a test can tell whether anything
// tried to bind it.
import koffi from 'koffi';

const realLoad = koffi.load.bind(koffi);
(koffi as { load: typeof koffi.load }).load = ((name: string, ...rest: unknown[]) => {
  if (/libbpf/.test(name)) {
    process.stderr.write(`HIDE-LIBBPF: refused ${name}\n`);
    throw new Error(`${name}: cannot open shared object file: No such file or directory`);
  }
  return (realLoad as (...a: unknown[]) => ReturnType<typeof koffi.load>)(name, ...rest);
}) as typeof koffi.load;
