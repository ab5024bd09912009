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
    public void Reload_FileUnchangedLongBeforeTheLastRead_NotReadAgain()
    {
        var cache = new YamlParseCache();
        var path = Path.Combine(_directory, "a.yaml");
        var old = DateTime.UtcNow.AddHours(-1);
        File.WriteAllText(path, Service("a", "10.0.0.1"));
        File.SetLastWriteTimeUtc(path, old);
        Assert.Equal("10.0.0.1", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));

        // Same size, same time as when it was read an hour after its last write: the cached text stands (no read). This is
        // the contract that makes a reload of thousands of files cost the files that changed.
        File.WriteAllText(path, Service("a", "10.0.0.9"));
        File.SetLastWriteTimeUtc(path, old);
        Assert.Equal("10.0.0.1", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));

        // Any other time, or size, and it is read again.
        File.SetLastWriteTimeUtc(path, old.AddTicks(1));
        Assert.Equal("10.0.0.9", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));
        File.WriteAllText(path, Service("a", "10.0.0.10"));
        File.SetLastWriteTimeUtc(path, old.AddTicks(1));
        Assert.Equal("10.0.0.10", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));
    }

    [Fact]
    public void Reload_SameSizeSameTimeWrittenRightAfterTheRead_ReadAgain()
    {
        // File times are coarse: a write just after a read can keep the time the read saw. A time that close to the read
        // vouches for nothing.
        var cache = new YamlParseCache();
        var path = Path.Combine(_directory, "a.yaml");
        var recent = DateTime.UtcNow;
        File.WriteAllText(path, Service("a", "10.0.0.1"));
        File.SetLastWriteTimeUtc(path, recent);
        Assert.Equal("10.0.0.1", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));

        File.WriteAllText(path, Service("a", "10.0.0.2"));
        File.SetLastWriteTimeUtc(path, recent);
        Assert.Equal("10.0.0.2", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));
    }

    [Fact]
    public void Reload_SymbolicLinkRetargeted_ReadAgainThoughTheLinkKeptItsTime()
    {
        // As a Kubernetes ConfigMap volume updates: the file is a link whose target changes, the link itself does not.
        var cache = new YamlParseCache();
        var old = DateTime.UtcNow.AddHours(-1);
        var targets = Directory.CreateTempSubdirectory("mesh-parse-cache-targets-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(targets, "one"), Service("a", "10.0.0.1"));
            File.WriteAllText(Path.Combine(targets, "two"), Service("a", "10.0.0.2"));
            File.SetLastWriteTimeUtc(Path.Combine(targets, "one"), old);
            File.SetLastWriteTimeUtc(Path.Combine(targets, "two"), old);
            var link = Path.Combine(_directory, "a.yaml");
            File.CreateSymbolicLink(link, Path.Combine(targets, "one"));
            SetLinkTime(link, old);
            Assert.Equal("10.0.0.1", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));

            // The new link has the old one's size (same target path length) and time.
            File.Delete(link);
            File.CreateSymbolicLink(link, Path.Combine(targets, "two"));
            SetLinkTime(link, old);
            Assert.Equal("10.0.0.2", Address(YamlConfigLoader.LoadDirectory(_directory, cache)));
        }
        finally
        {
            Directory.Delete(targets, recursive: true);
        }
    }

    private static void SetLinkTime(string link, DateTime time)
    {
        // .NET sets a link's target's time; touch -h sets the link's own.
        using var touch = System.Diagnostics.Process.Start("touch", ["-h", "-d", "@" + new DateTimeOffset(time).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), link]);
        touch.WaitForExit();
        Assert.Equal(0, touch.ExitCode);
    }

    private static string Address(YamlLoadResult result)
    {
        Assert.False(result.HasErrors, string.Join("; ", result.Errors));
        return result.Config.ServiceEntries.Single().StaticEndpoints.Single().Address;
    }
}
