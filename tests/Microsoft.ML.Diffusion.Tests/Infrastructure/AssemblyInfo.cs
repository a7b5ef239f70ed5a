// libtorch already uses both cores inside each test, and weight initialisation draws from torch's
// global generator: running test classes in parallel would only slow them and break seeded reproducibility.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]
