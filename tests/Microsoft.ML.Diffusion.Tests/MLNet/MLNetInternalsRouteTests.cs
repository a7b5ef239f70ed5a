using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>
/// Fails loudly if an ML.NET upgrade removes or reshapes the internals that the library compiles
/// against through eng/MLNetInternals.targets (checked against the REAL runtime assemblies).
/// </summary>
public sealed class MLNetInternalsRouteTests
{
    private const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    private static readonly Assembly Core = typeof(Microsoft.ML.Runtime.IHostEnvironment).Assembly;
    private static readonly Assembly Data = typeof(MLContext).Assembly;

    private static Type T(Assembly a, string name) =>
        a.GetType(name, throwOnError: false) ?? throw new Xunit.Sdk.XunitException($"ML.NET type '{name}' not found in {a.GetName()}: the internals route is broken.");

    private static void HasMethod(Type t, string name, params Type[] args) =>
        Assert.True(t.GetMethod(name, All, binder: null, args, modifiers: null) != null,
            $"{t.FullName}.{name}({string.Join(", ", args.Select(a => a.Name))}) is missing: the internals route is broken.");

    [Fact]
    public void LoadedAssemblies_AreTheRealOnes_NotThePublicizedCopies()
    {
        // In the real assembly these are not public; in the publicized copy they would be.
        Assert.False(T(Core, "Microsoft.ML.ModelLoadContext").IsPublic);
        Assert.False(T(Core, "Microsoft.ML.VersionInfo").IsPublic);
        Assert.Equal("6.0.0", typeof(MLContext).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0]);
    }

    [Fact]
    public void InternalTypesAndMembersWeUse_Exist()
    {
        Type loadable = T(Core, "Microsoft.ML.LoadableClassAttribute");
        Assert.NotNull(loadable.GetConstructor(All, [typeof(Type), typeof(Type), typeof(Type), typeof(string), typeof(string[])]));
        T(Core, "Microsoft.ML.SignatureLoadModel");

        Type versionInfo = T(Core, "Microsoft.ML.VersionInfo");
        Assert.NotNull(versionInfo.GetConstructor(All, [typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string)]));
        Assert.NotNull(versionInfo.GetField("VerWrittenCur", All));

        Type loadCtx = T(Core, "Microsoft.ML.ModelLoadContext");
        HasMethod(loadCtx, "CheckAtModel", versionInfo);
        HasMethod(loadCtx, "TryLoadBinaryStream", typeof(string), typeof(Action<BinaryReader>));
        Type header = T(Core, "Microsoft.ML.ModelHeader");
        Assert.Equal(header, loadCtx.GetField("Header", All)?.FieldType);
        Assert.NotNull(header.GetField("ModelVerWritten", All));
        Assert.NotNull(header.GetField("ModelVerReadable", All));

        Type saveCtx = T(Core, "Microsoft.ML.ModelSaveContext");
        HasMethod(saveCtx, "CheckAtModel");
        HasMethod(saveCtx, "SetVersionInfo", versionInfo);
        HasMethod(saveCtx, "SaveBinaryStream", typeof(string), typeof(Action<BinaryWriter>));

        Type catalogUtils = T(Data, "Microsoft.ML.Data.CatalogUtils");
        HasMethod(catalogUtils, "GetEnvironment", typeof(TransformsCatalog));
        Type host = T(Core, "Microsoft.ML.Runtime.IHost");
        Assert.NotNull(host.GetProperty("Rand", All));
        Type hostEnv = T(Core, "Microsoft.ML.Runtime.IHostEnvironment");
        Assert.NotNull(hostEnv.GetMethod("Register", All));
    }
}
