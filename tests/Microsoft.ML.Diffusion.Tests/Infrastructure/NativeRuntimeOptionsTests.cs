using Microsoft.ML.Diffusion.Devices;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

public class NativeRuntimeOptionsTests
{
    [Fact]
    public void EachSettingIsOnByDefaultAndTheEnvironmentTurnsItOff()
    {
        var defaults = new NativeRuntimeOptions();
        Assert.True(defaults.TuneAllocator);
        Assert.True(defaults.PreferAvx2Kernels);
        Assert.Null(defaults.ThreadCount);

        string[] names = [NativeRuntimeOptions.KeepMallocDefaultsVariable, NativeRuntimeOptions.KeepCpuCapabilityVariable, NativeRuntimeOptions.ThreadsVariable];
        var saved = names.ToDictionary(n => n, Environment.GetEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(NativeRuntimeOptions.KeepMallocDefaultsVariable, "1");
            Environment.SetEnvironmentVariable(NativeRuntimeOptions.KeepCpuCapabilityVariable, "1");
            Environment.SetEnvironmentVariable(NativeRuntimeOptions.ThreadsVariable, "1");
            var effective = defaults.WithEnvironment();
            Assert.False(effective.TuneAllocator);
            Assert.False(effective.PreferAvx2Kernels);
            Assert.Equal(1, effective.ThreadCount);

            Environment.SetEnvironmentVariable(NativeRuntimeOptions.ThreadsVariable, "two");
            Assert.Contains("'two'", Assert.Throws<InvalidOperationException>(() => defaults.WithEnvironment()).Message);

            foreach (var name in names) Environment.SetEnvironmentVariable(name, null);
            Assert.Equal(defaults, defaults.WithEnvironment() with { });   // nothing set: the options as given
        }
        finally
        {
            foreach (var (name, value) in saved) Environment.SetEnvironmentVariable(name, value);
        }
    }

    [Fact]
    public void SettingsAreFixedOnceApplied()
    {
        DiffusionDevice.EnsureInitialized();
        var applied = DiffusionDevice.Settings;
        Assert.NotNull(applied);
        DiffusionDevice.Configure(applied);   // the same choice again is fine
        var e = Assert.Throws<InvalidOperationException>(() => DiffusionDevice.Configure(applied with { TuneAllocator = !applied.TuneAllocator }));
        Assert.Contains("Configure before", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => DiffusionDevice.Configure(new NativeRuntimeOptions { ThreadCount = -1 }));
    }
}
