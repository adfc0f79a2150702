#if canImport(Glibc)
import Glibc
#endif

// How the benchmark measures and prints: timings as the minimum and median of rounds, each
// line with its floor, ratio, goal and whether the goal was met.

/// Monotonic nanoseconds.
func now() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// A timing: nanoseconds per operation, the minimum and the median of the rounds.
struct Timing {
  var minimum: Double
  var median: Double
}

/// Times `rounds` runs of `body`, each doing `operations` operations.
func measure(rounds: Int = 5, operations: Int, _ body: () throws -> Void) rethrows -> Timing {
  var samples: [Double] = []
  for _ in 0..<rounds {
    let start = now()
    try body()
    samples.append(Double(now() - start) / Double(operations))
  }
  samples.sort()
  return Timing(minimum: samples[0], median: samples[samples.count / 2])
}

/// `value` with two decimals.
func format(_ value: Double) -> String {
  let scaled = (value * 100).rounded() / 100
  return "\(scaled)"
}

/// The goals of this run: how many there were and which were missed.
nonisolated(unsafe) var goals: [(name: String, met: Bool)] = []

/// Prints one benchmark line and records its goal: `name: figures: ratio (goal ...: met)`.
func report(_ name: String, _ figures: String, goal: String, met: Bool) {
  goals.append((name, met))
  print("\(name): \(figures) (goal \(goal): \(met ? "met" : "NOT MET"))")
}

/// Prints a line without a goal (a figure for the record).
func note(_ name: String, _ figures: String) {
  print("\(name): \(figures)")
}

/// Ends the run on an operation that failed: a benchmark never hides one.
func abort(_ what: String, _ error: any Error) -> Never {
  print("iommufd-bench: \(what) failed: \(error)")
  exit(1)
}

/// A sink the optimiser cannot remove.
nonisolated(unsafe) var sink: UInt64 = 0
