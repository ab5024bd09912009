using Mesh.IntegrationTests.Infrastructure;

namespace Mesh.IntegrationTests.Interop;

/// <summary>
/// An independent xDS client — Node's @grpc/grpc-js-xds — resolves xds:///inventory through our control plane
/// and calls two .NET inventory instances: in plaintext (issue 2), and over mTLS with XdsChannelCredentials.
/// grpc-js cannot do TLS to the control plane, so these meshes switch on its plaintext ADS port (off by default).
/// </summary>
public sealed class GrpcJsXdsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task NodeXdsClient_CallsBothInstances_AndStopsCallingAStoppedInstanceWithin5Seconds()
    {
        await using var mesh = await LocalMesh.StartAsync(output, plaintextXds: true);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        var second = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2");
        await mesh.WaitForEndpointsAsync("inventory", 2);

        NodeCall[] all;
        long stoppedAt;
        var node = await NodeXdsClient.StartAsync(mesh.ControlPlane, mesh.StateDirectory, xdsCredentials: false);
        await using (node)
        {
            try
            {
                await Eventually.HoldsAsync(
                    () => Task.FromResult(node.Calls.Any(c => c.instance == "inventory-1") && node.Calls.Any(c => c.instance == "inventory-2")),
                    "the Node client to reach both instances",
                    TimeSpan.FromSeconds(60));

                await second.Process.StopAsync(TimeSpan.FromSeconds(15));
                stoppedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                output.WriteLine("inventory-2 stopped (SIGTERM)");

                // Watch long enough to see that calls keep succeeding on inventory-1 only.
                await Eventually.HoldsAsync(
                    () => Task.FromResult(node.Calls.Count(c => c.at > stoppedAt + 5_000 && c.instance == "inventory-1") >= 50),
                    "50 calls to inventory-1 later than 5 s after the stop",
                    TimeSpan.FromSeconds(60));
            }
            finally
            {
                output.WriteLine(node.Errors);
            }

            all = [.. node.Calls];
        }

        var lastToStopped = all.Where(c => c.instance == "inventory-2").Max(c => c.at);
        output.WriteLine($"node calls: {all.Length}; inventory-1 {all.Count(c => c.instance == "inventory-1")}, inventory-2 {all.Count(c => c.instance == "inventory-2")}, errors {all.Count(c => c.error is not null)}");
        Console.WriteLine($"[grpc-js-xds interop] {all.Length} calls, {all.Count(c => c.error is not null)} failed");

        Assert.All(all, c => Assert.Null(c.error));
        Assert.Contains(all, c => c.instance == "inventory-1");
        Assert.Contains(all, c => c.instance == "inventory-2");
        Assert.True(
            lastToStopped <= stoppedAt + 5_000,
            $"the Node client called the stopped instance {lastToStopped - stoppedAt} ms after it stopped; it must stop within 5 s");
    }

    /// <summary>
    /// grpc-js-xds gets the EDS priorities for its bootstrap's node locality, as istiod computes them: with outlier detection
    /// set (the mesh default turns locality failover on) it keeps to the instance in its own zone, and when that one stops
    /// it fails over to the other zone (connectivity-based, as gRPC's priority policy).
    /// </summary>
    [Fact]
    public async Task NodeXdsClientWithLocality_CallsItsOwnZone_AndFailsOverWhenItStops()
    {
        await using var mesh = await LocalMesh.StartAsync(output, plaintextXds: true);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "inventory-locality.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: inventory}
            spec:
              host: inventory.default.svc.cluster.local
              trafficPolicy:
                outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s}
            """);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", new Dictionary<string, string?> { ["Mesh__Locality"] = "us-east/zone-a" });
        var zoneB = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2", new Dictionary<string, string?> { ["Mesh__Locality"] = "us-east/zone-b" });
        await mesh.WaitForEndpointsAsync("inventory", 2);

        NodeCall[] all;
        int beforeStop;
        // The priority policy's and its children's traces say why the client left its zone, should it ever do so early.
        var node = await NodeXdsClient.StartAsync(
            mesh.ControlPlane, mesh.StateDirectory, xdsCredentials: false, locality: "us-east/zone-b", trace: "priority,xds_cluster_resolver,round_robin,pick_first");
        await using (node)
        {
            try
            {
                await Eventually.HoldsAsync(() => Task.FromResult(node.Calls.Count(c => c.instance is not null) >= 200), "200 calls from the Node client", TimeSpan.FromSeconds(60));

                // Calls complete one after another and are read in order, so the ones read by now all finished before the
                // stop began: the split is by position, not by comparing the Node process's clock with ours.
                // The instance deregisters first (graceful drain), so the client may fail over before StopAsync returns.
                beforeStop = node.Calls.Count;
                await zoneB.Process.StopAsync(TimeSpan.FromSeconds(15));
                await Eventually.HoldsAsync(
                    () => Task.FromResult(node.Calls.Skip(beforeStop).Count(c => c.instance == "inventory-1") >= 50),
                    "50 calls to the zone-a instance after the zone-b one stopped",
                    TimeSpan.FromSeconds(60));
            }
            finally
            {
                output.WriteLine(node.Errors);
            }

            all = [.. node.Calls];
        }

        var before = all[..beforeStop];
        output.WriteLine($"before the stop: inventory-1 {before.Count(c => c.instance == "inventory-1")}, inventory-2 {before.Count(c => c.instance == "inventory-2")}, errors {before.Count(c => c.error is not null)}");
        Console.WriteLine($"[grpc-js-xds locality] node in us-east/zone-b: {before.Count(c => c.instance == "inventory-2")}/{before.Length} calls to its zone before the stop; then failed over to zone a");
        var strayIndex = Array.FindIndex(before, c => c.instance == "inventory-1");
        Assert.True(
            strayIndex < 0,
            strayIndex < 0 ? null : $"call {strayIndex + 1} of the {before.Length} before the stop went to inventory-1 at {before[strayIndex].at} (the one before it at {(strayIndex > 0 ? before[strayIndex - 1].at : 0)}); the grpc-js traces above say why");
        Assert.True(before.Count(c => c.instance == "inventory-2") >= 200);
    }

    /// <summary>
    /// grpc-js-xds NACKs a whole route configuration that holds a direct response or a redirect, so it would keep
    /// calling through its last routes; the control plane sends it a fault abort with the route's status instead, and a
    /// VirtualService fault reaches it with the percentage it requires.
    /// </summary>
    [Fact]
    public async Task NodeXdsClient_DirectResponseAndFaultRoutes_AreAppliedNotNacked()
    {
        await using var mesh = await LocalMesh.StartAsync(output, plaintextXds: true);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await mesh.WaitForEndpointsAsync("inventory", 1);
        var vsFile = Path.Combine(mesh.ConfigDirectory, "inventory-vs.yaml");

        var node = await NodeXdsClient.StartAsync(mesh.ControlPlane, mesh.StateDirectory, xdsCredentials: false);
        await using (node)
        {
            try
            {
                await Eventually.HoldsAsync(() => Task.FromResult(node.Calls.Any(c => c.instance == "inventory-1")), "the Node client to reach inventory", TimeSpan.FromSeconds(60));

                // A maintenance route answering 503 for every Inventory method, before a catch-all the call must not fall through to.
                await File.WriteAllTextAsync(vsFile, """
                    apiVersion: networking.istio.io/v1
                    kind: VirtualService
                    metadata: {name: inventory}
                    spec:
                      hosts: [inventory]
                      http:
                      - name: maintenance
                        match: [{uri: {prefix: /demo.inventory.v1.Inventory/}}]
                        directResponse: {status: 503, body: {string: down}}
                      - route: [{destination: {host: inventory}}]
                    """);
                var since = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                await Eventually.HoldsAsync(
                    () => Task.FromResult(node.Calls.Count(c => c.at > since && c.error?.StartsWith("UNAVAILABLE", StringComparison.Ordinal) == true) >= 20),
                    "the direct response to reach grpc-js as UNAVAILABLE",
                    TimeSpan.FromSeconds(60));
                var firstFailure = node.Calls.Where(c => c.at > since && c.error is not null).Min(c => c.at);
                Assert.DoesNotContain(node.Calls, c => c.at > firstFailure && c.instance is not null);

                await File.WriteAllTextAsync(vsFile, """
                    apiVersion: networking.istio.io/v1
                    kind: VirtualService
                    metadata: {name: inventory}
                    spec:
                      hosts: [inventory]
                      http:
                      - fault: {abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}
                        route: [{destination: {host: inventory}}]
                    """);
                since = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                await Eventually.HoldsAsync(
                    () => Task.FromResult(node.Calls.Count(c => c.at > since && c.error?.StartsWith("RESOURCE_EXHAUSTED", StringComparison.Ordinal) == true) >= 20),
                    "the fault abort to reach grpc-js",
                    TimeSpan.FromSeconds(60));
            }
            finally
            {
                output.WriteLine(node.Errors);
            }
        }

        var all = node.Calls.ToArray();
        Console.WriteLine($"[grpc-js-xds route features] {all.Length} calls: {all.Count(c => c.error?.StartsWith("UNAVAILABLE", StringComparison.Ordinal) == true)} UNAVAILABLE from the direct response, {all.Count(c => c.error?.StartsWith("RESOURCE_EXHAUSTED", StringComparison.Ordinal) == true)} RESOURCE_EXHAUSTED from the fault");
        Assert.DoesNotContain("NACK", node.Errors, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task NodeXdsClientWithXdsCredentials_CallsStrictInstancesOverMtls_AndServerSeesItsSpiffeId()
    {
        await using var mesh = await LocalMesh.StartAsync(output, plaintextXds: true);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "strict.yaml"), """
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {name: default, namespace: istio-system}
            spec:
              mtls: {mode: STRICT}
            """);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2");
        await mesh.WaitForEndpointsAsync("inventory", 2);

        NodeCall[] all;
        var node = await NodeXdsClient.StartAsync(mesh.ControlPlane, mesh.StateDirectory, xdsCredentials: true);
        await using (node)
        {
            try
            {
                await Eventually.HoldsAsync(
                    () => Task.FromResult(node.Calls.Count(c => c.error is null) >= 100 && node.Calls.Select(c => c.instance).Distinct().Count() >= 2),
                    "100 successful mTLS calls from the Node client across both instances",
                    TimeSpan.FromSeconds(60));
            }
            finally
            {
                output.WriteLine(node.Errors);
            }

            all = [.. node.Calls];
        }

        output.WriteLine($"node mTLS calls: {all.Length}; errors {all.Count(c => c.error is not null)}; first error {all.FirstOrDefault(c => c.error is not null)?.error}");
        Console.WriteLine($"[grpc-js-xds mTLS interop] {all.Length} calls, {all.Count(c => c.error is not null)} failed");
        Assert.All(all, c => Assert.Null(c.error));
        Assert.All(all, c => Assert.Equal("spiffe://cluster.local/ns/default/sa/node-client", c.caller));
    }
}
