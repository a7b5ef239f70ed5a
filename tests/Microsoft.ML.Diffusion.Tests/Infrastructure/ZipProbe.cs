using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Infrastructure;

/// <summary>Runs tests/Microsoft.ML.Diffusion.ZipProbe: a fresh process that loads a model zip and prints what it generates.</summary>
public static class ZipProbe
{
    /// <summary>The probe's output lines for <paramref name="seeds"/>, after it loaded <paramref name="assemblies"/>.</summary>
    public static string[] Run(string zip, string seeds, string column, params string[] assemblies)
    {
        string probe = Program;
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { probe, zip, seeds, column }.Concat(assemblies)) start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(120_000), "the probe process did not finish");
        Assert.True(process.ExitCode == 0, $"probe failed ({process.ExitCode}): {stderr.Result}");
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>The probe's assembly, to run with <c>dotnet</c>.</summary>
    public static string Program => Path.Combine(ProbeDirectory(), "Microsoft.ML.Diffusion.ZipProbe.dll");

    // tests/Microsoft.ML.Diffusion.Tests/bin/<config>/<tfm>/ → tests/Microsoft.ML.Diffusion.ZipProbe/bin/<config>/<tfm>/
    private static string ProbeDirectory()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = testDir.Name, config = testDir.Parent!.Name;
        string dir = Path.Combine(testDir.Parent!.Parent!.Parent!.Parent!.FullName, "Microsoft.ML.Diffusion.ZipProbe", "bin", config, tfm);
        Assert.True(Directory.Exists(dir), $"the probe was not built at {dir}");
        return dir;
    }
}
