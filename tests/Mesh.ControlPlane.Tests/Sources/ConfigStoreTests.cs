using Mesh.ControlPlane.Sources;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Sources;

public sealed class ConfigStoreTests
{
    private const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
        """;

    [Fact]
    public void ApplyYaml_InvalidFirstThenValidThenInvalid_ValidOnlyAfterTheFirstGoodFolderAndKeepsIt()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var changes = 0;
        store.Changed += () => changes++;

        Assert.False(store.ApplyYaml(YamlConfigLoader.Load([("orders.yaml", Orders.Replace("number: 80", "number: 0", StringComparison.Ordinal))])));
        Assert.False(store.HasValidConfig);
        Assert.Equal(0, changes);

        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("orders.yaml", Orders)])));
        Assert.True(store.HasValidConfig);
        var good = store.Current;

        Assert.False(store.ApplyYaml(YamlConfigLoader.Load([("orders.yaml", "kind: [")])));
        Assert.True(store.HasValidConfig);
        Assert.Same(good, store.Current);
        Assert.Equal(1, changes);
    }
}
