// libtorch already uses both cores inside each test, and weight initialisation draws from torch's
// global generator, which each trainer seeds: tests must not run in parallel.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]
