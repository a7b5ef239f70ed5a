// The one place that opens ML.NET's internals to this assembly. ML.NET 6.0.0 keeps the types a
// persistable transformer needs (LoadableClassAttribute, ModelLoadContext, ModelSaveContext members,
// VersionInfo) internal. We compile against publicized reference copies (eng/MLNetInternals.targets)
// and tell the runtime to allow the access with this attribute, which .NET honours though no public
// type declares it. tests/.../MLNet/MLNetInternalsRouteTests.cs fails loudly if an ML.NET upgrade breaks it.
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Data")]

namespace System.Runtime.CompilerServices
{
    /// <summary>Lets this assembly access non-public members of the named assembly at run time.</summary>
    [AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
    internal sealed class IgnoresAccessChecksToAttribute : Attribute
    {
        public IgnoresAccessChecksToAttribute(string assemblyName) => AssemblyName = assemblyName;

        public string AssemblyName { get; }
    }
}
