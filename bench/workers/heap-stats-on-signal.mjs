// Preloaded into a broker by bench/client-memory.mjs (node --import …): on SIGUSR2 the process
// runs a full garbage collection and writes process.memoryUsage() and the V8 heap spaces to
// /tmp/heapstat-<pid>.json, so what is measured is what is retained.
import v8 from 'node:v8';
import vm from 'node:vm';
import fs from 'node:fs';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
process.on('SIGUSR2', () => {
  gc();
  gc();
  const m = process.memoryUsage();
  fs.writeFileSync(
    `/tmp/heapstat-${process.pid}.json`,
    JSON.stringify({
      ...m,
      spaces: v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size]),
    }),
  );
});
