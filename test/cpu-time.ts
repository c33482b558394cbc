// CPU time of this process in ms: what "rejected quickly" bounds are about. Unlike the
// wall clock it does not grow when other processes share the cores (CI runs the e2e
// suites' backends beside the unit tests on 2 cores).
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
