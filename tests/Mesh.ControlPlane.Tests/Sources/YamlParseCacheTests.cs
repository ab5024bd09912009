using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>A folder reload parses only the files whose text changed, and still validates (and reports) the folder as a whole.</summary>
public sealed class YamlParseCacheTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("mesh-parse-cache-").FullName;

    private static string Service(string name, string address) => $$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: {{name}}, namespace: shop}
        spec:
          hosts: [{{name}}]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints: [{address: {{address}}}]
        """;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Reload_OneFileEdited_OthersReusedTheEditedOneReadAgain()
    {
        var cache = new YamlParseCache();
        File.WriteAllText(Path.Combine(_directory, "a.yaml"), Service("a", "10.0.0.1"));
        File.WriteAllText(Path.Combine(_directory, "b.yaml"), Service("b", "10.0.0.2"));
        var first = YamlConfigLoader.LoadDirectory(_directory, cache);

        File.WriteAllText(Path.Combine(_directory, "b.yaml"), Service("b", "10.0.0.3"));
        var second = YamlConfigLoader.LoadDirectory(_directory, cache);

        Assert.False(second.HasErrors);
        Assert.Same(first.Config.ServiceEntries.Single(s => s.Name == "a"), second.Config.ServiceEntries.Single(s => s.Name == "a"));
        Assert.Equal("10.0.0.3", second.Config.ServiceEntries.Single(s => s.Name == "b").StaticEndpoints.Single().Address);
        Assert.Equal(second.Config.ServiceEntries.Select(s => s.Name), YamlConfigLoader.LoadDirectory(_directory).Config.ServiceEntries.Select(s => s.Name));
    }

    [Fact]
    public void Reload_CrossFileError_StillFoundWhenOnlyOneFileChanged_AndDeletedFilesDropped()
    {
        var cache = new YamlParseCache();
        File.WriteAllText(Path.Combine(_directory, "a.yaml"), Service("a", "10.0.0.1"));
        File.WriteAllText(Path.Combine(_directory, "b.yaml"), Service("b", "10.0.0.2"));
        Assert.False(YamlConfigLoader.LoadDirectory(_directory, cache).HasErrors);

        // b now declares host a too: a duplicate across files, found although a.yaml came from the cache.
        File.WriteAllText(Path.Combine(_directory, "b.yaml"), Service("a", "10.0.0.2").Replace("name: a,", "name: b,", StringComparison.Ordinal));
        var duplicate = YamlConfigLoader.LoadDirectory(_directory, cache);
        Assert.Contains(duplicate.Errors, e => !e.IsWarning && e.File == "b.yaml" && e.Message.Contains("is already declared by ServiceEntry shop/a (a.yaml:1)", StringComparison.Ordinal));

        File.Delete(Path.Combine(_directory, "b.yaml"));
        var after = YamlConfigLoader.LoadDirectory(_directory, cache);
        Assert.False(after.HasErrors);
        Assert.Equal(1, cache.Count);
        Assert.Equal(["a"], after.Config.ServiceEntries.Select(s => s.Name));
    }

    [Fact]
    public void Reload_EditKeepsSizeAndAnOldModificationTime_StillRead()
    {
        // cp -p, tar, rsync -a and reproducible bundles keep a file's old time: a same-length edit (another principal,
        // another address, another weight) must not be taken for the text read before.
        var cache = new YamlParseCache();
        var file = Path.Combine(_directory, "a.yaml");
        var old = DateTime.UtcNow - TimeSpan.FromHours(1);
        File.WriteAllText(file, Service("a", "10.0.0.1"));
        File.SetLastWriteTimeUtc(file, old);
        Assert.Equal("10.0.0.1", YamlConfigLoader.LoadDirectory(_directory, cache).Config.ServiceEntries.Single().StaticEndpoints.Single().Address);

        File.WriteAllText(file, Service("a", "10.0.0.9"));
        File.SetLastWriteTimeUtc(file, old);

        Assert.Equal("10.0.0.9", YamlConfigLoader.LoadDirectory(_directory, cache).Config.ServiceEntries.Single().StaticEndpoints.Single().Address);
    }
}
