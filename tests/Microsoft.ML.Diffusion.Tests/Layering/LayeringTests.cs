using System.Text.RegularExpressions;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Layering;

/// <summary>
/// The library's folders keep their layering: only MLNet/ knows ML.NET, no two folders import each other (directly or
/// through others), and no namespace shadows ML.NET's or the BCL's. Read from the sources, so a new file is checked too.
/// </summary>
public sealed class LayeringTests
{
    private static readonly string Library = Path.Combine(RepositoryRoot(), "src", "Microsoft.ML.Diffusion");

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLDiffusion.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No MLDiffusion.sln above {AppContext.BaseDirectory}.");
    }

    private static IEnumerable<(string Folder, string File, string[] Code)> Sources()
    {
        foreach (string folder in Directory.GetDirectories(Library).Select(Path.GetFileName).Where(f => f is not ("bin" or "obj"))!)
            foreach (string file in Directory.GetFiles(Path.Combine(Library, folder), "*.cs", SearchOption.AllDirectories))
                yield return (folder, Path.GetRelativePath(Library, file),
                    [.. File.ReadAllLines(file).Where(l => !l.TrimStart().StartsWith("//", StringComparison.Ordinal))]);
    }

    private static string[] Folders() => [.. Sources().Select(s => s.Folder).Distinct()];

    [Fact]
    public void OnlyMLNetReferencesMLNet()
    {
        var mlNet = new Regex(@"^\s*using (static )?Microsoft\.ML(\.(Data|Runtime|Transforms))?;|Microsoft\.ML\.(Data|Runtime)\.");
        var offenders = Sources().Where(s => s.Folder != "MLNet")
            .SelectMany(s => s.Code.Where(l => mlNet.IsMatch(l)).Select(l => $"{s.File}: {l.Trim()}")).ToArray();
        Assert.True(offenders.Length == 0, "Only MLNet/ may use ML.NET:\n" + string.Join("\n", offenders));
    }

    [Fact]
    public void NoFolderImportsAnotherThatImportsIt()
    {
        string[] folders = Folders();
        var imports = folders.ToDictionary(f => f, _ => new HashSet<string>());
        foreach (var (folder, file, code) in Sources())
            foreach (string other in folders.Where(o => o != folder))
            {
                var reference = new Regex($@"using Microsoft\.ML\.Diffusion\.{other}\b|Microsoft\.ML\.Diffusion\.{other}\.|(?<![\w.]){other}\.[A-Z]\w*");
                if (code.Any(l => reference.IsMatch(l))) imports[folder].Add(other);
            }
        bool Reaches(string from, string to)
        {
            var seen = new HashSet<string>();
            var stack = new Stack<string>(imports[from]);
            while (stack.Count > 0)
            {
                string next = stack.Pop();
                if (next == to) return true;
                if (seen.Add(next)) foreach (string n in imports[next]) stack.Push(n);
            }
            return false;
        }
        var cycles = imports.SelectMany(kv => kv.Value.Where(to => Reaches(to, kv.Key)).Select(to => $"{kv.Key} → {to}")).ToArray();
        Assert.True(cycles.Length == 0, "Folders that import each other (directly or through others): " + string.Join(", ", cycles));
    }

    [Fact]
    public void NoNamespaceShadowsMLNetsOrTheBcls()
    {
        string[] shadowing = ["Runtime", "IO", "Data", "Transforms", "Threading", "Collections", "Linq", "Diagnostics"];
        var declared = Sources().SelectMany(s => s.Code)
            .Select(l => Regex.Match(l, @"^namespace Microsoft\.ML\.Diffusion\.(\w+)")).Where(m => m.Success).Select(m => m.Groups[1].Value).Distinct();
        Assert.Empty(declared.Intersect(shadowing));
    }
}
