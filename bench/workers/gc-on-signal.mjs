// Preloaded into the brokers of the sessions scenario (NODE_OPTIONS=--import …): on SIGUSR2 the
// process runs a full garbage collection, so the memory measured afterwards is what is retained,
// not what the collector has not got round to yet. Nothing else changes.
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
process.on('SIGUSR2', () => {
  gc();
  gc();
});
