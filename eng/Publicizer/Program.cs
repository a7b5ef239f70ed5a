// Publicizer: writes a copy of a .NET assembly whose non-public types and members are public,
// for use as a compile-time reference only (the real assembly is what loads at run time).
//
// Usage: Publicizer <input.dll> <output.dll> [<input2.dll> <output2.dll> ...]
//
// Rules (chosen so the C# compiler accepts code that uses and subclasses the internals):
//  * internal types and non-private nested types become public;
//  * non-virtual internal / protected / private protected / protected internal methods,
//    constructors and fields become public;
//  * `private` types and members stay private: they are implementation details, and publicizing
//    them turns every same-named member of our subclasses into error CS0108 (hides inherited
//    member), e.g. a Mapper's `_parent` field vs RowToRowTransformerBase.MapperBase._parent
//    (so private virtual methods, i.e. explicit interface implementations, stay private too);
//  * virtual members keep their access, because an override must match the base's access, except
//    `internal` and `private protected` virtual members (Assembly / FamANDAssem), which cannot be
//    overridden from another assembly at all; they become `protected` (Family) so overrides compile;
//  * compiler-generated names (containing '<': lambdas, closures, backing fields, local
//    functions, <PrivateImplementationDetails>) are left alone: exposing them only causes clashes;
//  * a non-private field named like an event of its type stays as is (belt and braces: making it
//    public would make `x.Event += ...` ambiguous).
// The assembly identity (name, version, public key) is unchanged so that references to it bind
// to the real assembly at run time; the strong-name signature is no longer valid, which does not
// matter for a reference assembly (.NET does not validate strong-name signatures).

using Mono.Cecil;

if (args.Length == 0 || args.Length % 2 != 0)
{
    Console.Error.WriteLine("usage: Publicizer <input.dll> <output.dll> [<input.dll> <output.dll> ...]");
    return 2;
}

// The tool's own timestamp counts as an input: if the rules above change, outputs are rewritten.
DateTime toolTime = File.GetLastWriteTimeUtc(typeof(Publicizer).Assembly.Location);

for (int i = 0; i < args.Length; i += 2)
{
    string input = Path.GetFullPath(args[i]);
    string output = Path.GetFullPath(args[i + 1]);
    if (!File.Exists(input))
    {
        Console.Error.WriteLine($"Publicizer: error: input '{input}' does not exist.");
        return 1;
    }

    // Incremental: nothing to do if the output is newer than both the input and this tool.
    if (File.Exists(output))
    {
        DateTime outTime = File.GetLastWriteTimeUtc(output);
        if (outTime >= File.GetLastWriteTimeUtc(input) && outTime >= toolTime)
        {
            Console.WriteLine($"Publicizer: '{output}' is up to date.");
            continue;
        }
    }

    Publicizer.Run(input, output);
}
return 0;

internal static class Publicizer
{
    public static void Run(string input, string output)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);

        // Write to a unique temporary file and move it into place, so a concurrent build that
        // reads (or also writes) the output never sees a half-written file.
        string temp = output + "." + Guid.NewGuid().ToString("N") + ".tmp";
        int types = 0, members = 0;
        try
        {
            var resolver = new DefaultAssemblyResolver();
            resolver.AddSearchDirectory(Path.GetDirectoryName(input)!);
            // ReadingMode.Immediate + InMemory: the input file is not held open while writing.
            using (var module = ModuleDefinition.ReadModule(input, new ReaderParameters
            {
                AssemblyResolver = resolver,
                ReadingMode = ReadingMode.Immediate,
                InMemory = true,
                ReadSymbols = false,
            }))
            {
                foreach (TypeDefinition type in module.Types)
                {
                    Visit(type, ref types, ref members);
                }

                // DeterministicMvid: same input gives byte-identical output (MVID hashed from content;
                // the PE timestamp is carried over from the input).
                module.Write(temp, new WriterParameters { DeterministicMvid = true });
            }
            File.Move(temp, output, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
        Console.WriteLine($"Publicizer: wrote '{output}' ({types} types, {members} members made accessible).");
    }

    private static bool IsCompilerGenerated(string name) => name.Contains('<');

    private static void Visit(TypeDefinition type, ref int types, ref int members)
    {
        if (IsCompilerGenerated(type.Name))
        {
            return; // and its nested types: they are only reachable through it
        }

        if (type.IsNested)
        {
            if (type.IsNestedPrivate)
            {
                return;
            }
            if (!type.IsNestedPublic)
            {
                type.Attributes = (type.Attributes & ~TypeAttributes.VisibilityMask) | TypeAttributes.NestedPublic;
                types++;
            }
        }
        else if (!type.IsPublic)
        {
            type.Attributes = (type.Attributes & ~TypeAttributes.VisibilityMask) | TypeAttributes.Public;
            types++;
        }

        foreach (MethodDefinition method in type.Methods)
        {
            if (IsCompilerGenerated(method.Name) || method.IsPublic || method.IsPrivate)
            {
                continue;
            }
            if (method.IsVirtual)
            {
                // Overrides must repeat the base's access; only the two kinds that cannot be
                // overridden from outside the assembly are changed (to protected).
                if (method.IsAssembly || method.IsFamilyAndAssembly)
                {
                    method.Attributes = (method.Attributes & ~MethodAttributes.MemberAccessMask) | MethodAttributes.Family;
                    members++;
                }
                continue;
            }
            method.Attributes = (method.Attributes & ~MethodAttributes.MemberAccessMask) | MethodAttributes.Public;
            members++;
        }

        HashSet<string>? eventNames = type.HasEvents ? type.Events.Select(e => e.Name).ToHashSet() : null;
        foreach (FieldDefinition field in type.Fields)
        {
            if (IsCompilerGenerated(field.Name) || field.IsPublic || field.IsPrivate || (eventNames?.Contains(field.Name) ?? false))
            {
                continue;
            }
            field.Attributes = (field.Attributes & ~FieldAttributes.FieldAccessMask) | FieldAttributes.Public;
            members++;
        }

        foreach (TypeDefinition nested in type.NestedTypes)
        {
            Visit(nested, ref types, ref members);
        }
    }
}
