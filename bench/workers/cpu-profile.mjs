// Preloaded (NODE_OPTIONS=--import …) where `--cpu-prof` cannot be given (it is not allowed in
// NODE_OPTIONS): profiles the main thread from start to exit through the inspector and writes
// <BENCH_CPU_PROFILE_DIR>/CPU.<pid>.cpuprofile, the same format as --cpu-prof.
import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', {
    interval: Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 200),
  });
  session.post('Profiler.start');
  process.on('exit', () => {
    // In-thread inspector sessions answer synchronously: the profile is written before exit.
    session.post('Profiler.stop', (err, res) => {
      if (!err)
        fs.writeFileSync(path.join(dir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
