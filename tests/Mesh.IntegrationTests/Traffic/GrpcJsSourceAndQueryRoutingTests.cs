using Mesh.IntegrationTests.Infrastructure;
using Mesh.IntegrationTests.Interop;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// What grpc-js-xds gets from a VirtualService with a queryParams route and a sourceLabels route: the query route is
/// left out of its configuration (an RPC has no query; grpc-js would ignore the condition and send every call there),
/// and the sourceLabels route is there only for a client whose bootstrap declares the labels. Nothing is NACKed.
/// </summary>
public sealed class GrpcJsSourceAndQueryRoutingTests(ITestOutputHelper output)
{
    private const int Calls = 200;

    [Fact]
    public async Task GrpcJsXdsClient_QueryRouteLeftOut_SourceLabelsRouteOnlyForTheLabelledClient()
    {
        await using var mesh = await LocalMesh.StartAsync(output, plaintextXds: true);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "inventory-routes.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: inventory}
            spec:
              host: inventory
              subsets:
              - {name: v1, labels: {version: v1}}
              - {name: v2, labels: {version: v2}}
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: inventory}
            spec:
              hosts: [inventory]
              http:
              - name: version-query
                match:
                - queryParams: {version: {exact: v2}}
                route:
                - destination: {host: inventory, subset: v2}
              - name: beta-testers
                match:
                - sourceLabels: {track: beta}
                route:
                - destination: {host: inventory, subset: v2}
              - route:
                - destination: {host: inventory, subset: v1}
            """);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", new Dictionary<string, string?> { ["Mesh__Labels__version"] = "v1" });
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2", new Dictionary<string, string?> { ["Mesh__Labels__version"] = "v2" });
        await mesh.WaitForEndpointsAsync("inventory", 2);

        var plain = await RunNodeAsync(mesh, labels: null);
        var beta = await RunNodeAsync(mesh, labels: new Dictionary<string, string> { ["track"] = "beta" });

        var plainMisroutes = plain.Count(c => c.instance != "inventory-1");
        var betaMisroutes = beta.Count(c => c.instance != "inventory-2");
        Console.WriteLine($"[source-query-grpc-js] grpc-js-xds without labels: {plainMisroutes}/{Calls} misroutes (query route left out); with track=beta: {betaMisroutes}/{Calls} misroutes");
        Assert.All(plain.Concat(beta), c => Assert.Null(c.error));
        Assert.Equal(0, plainMisroutes);
        Assert.Equal(0, betaMisroutes);
    }

    private async Task<NodeCall[]> RunNodeAsync(LocalMesh mesh, IReadOnlyDictionary<string, string>? labels)
    {
        var directory = Path.Combine(mesh.StateDirectory, labels is null ? "node-plain" : "node-beta");
        Directory.CreateDirectory(directory);
        var node = await NodeXdsClient.StartAsync(mesh.ControlPlane, directory, xdsCredentials: false, metadata: null, maxCalls: 20 * Calls, intervalMs: 0, labels);
        await using (node)
        {
            try
            {
                await Eventually.HoldsAsync(() => Task.FromResult(node.Calls.Count >= Calls), $"{Calls} calls from the Node client", TimeSpan.FromSeconds(120));
                using var dump = await mesh.ConfigDumpAsync();
                // The previous Node client's stream may still be listed: none of them NACKed anything.
                var clients = dump.RootElement.GetProperty("clients").EnumerateArray()
                    .Where(c => c.GetProperty("id").GetString()!.Contains("node-client", StringComparison.Ordinal)).ToList();
                Assert.NotEmpty(clients);
                foreach (var client in clients)
                {
                    output.WriteLine($"node client ({(labels is null ? "no labels" : "track=beta")}) acked: {client.GetProperty("acked")}; nacks: {client.GetProperty("nacks")}");
                    Assert.Equal(0, client.GetProperty("nacks").GetArrayLength());
                }
            }
            finally
            {
                output.WriteLine(node.Errors);
            }

            return [.. node.Calls.Take(Calls)];
        }
    }
}
