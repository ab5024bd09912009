using System.Net;
using Grpc.Core;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Registry.V1;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>A control plane whose folder is invalid at start is not ready and serves no ADS (never an empty snapshot).</summary>
public class InvalidConfigAtStartTests
{
    private const string OrdersCluster = "outbound|80||orders.default.svc.cluster.local";

    private const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
        spec:
          hosts: [orders]
          ports:
          - number: 80
            name: http
            protocol: HTTP
          workloadSelector:
            labels: {app: orders}
        """;

    // A misspelt kind: read as a warning, it would silently drop the DENY.
    private const string MistypedPolicy = """
        apiVersion: security.istio.io/v1
        kind: AuthorisationPolicy
        metadata: {name: deny-admin}
        spec:
          action: DENY
          rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
        """;

    [Fact]
    public async Task StartAsync_InvalidFolder_NotReadyNamingFileAndLine()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("policy.yaml", MistypedPolicy));

        using var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
        var body = await ready.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("config folder is invalid", body, StringComparison.Ordinal);
        Assert.Contains("policy.yaml:2: AuthorisationPolicy default/deny-admin: kind: AuthorisationPolicy is not a known security.istio.io kind", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_FileWithAMappingAsPortName_StartsNotReadyNamingFileAndLine()
    {
        // An unrendered Helm template under ports: a flow mapping whose key is a mapping.
        const string Template = """
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata:
              name: orders-1
            spec:
              address: 10.0.0.1
              labels: {app: orders}
              ports: {{ .Values.ports }}
            """;
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("w.yaml", Template));

        using var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
        var body = await ready.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("config folder is invalid", body, StringComparison.Ordinal);
        Assert.Contains("w.yaml:8: WorkloadEntry default/orders-1: spec.ports: port names must be non-empty strings", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StreamAggregatedResources_InvalidFolderAtStart_UnavailableWithReasonNeverAnEmptySnapshot()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("policy.yaml", MistypedPolicy));

        var ex = await Assert.ThrowsAsync<RpcException>(() => FirstResponseAsync(cp, TypeUrls.Cluster));

        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
        Assert.Contains("control plane not ready", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("policy.yaml:2", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Register_InvalidFolderAtStart_UnavailableBecauseServiceEntriesAreUnknown()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("policy.yaml", MistypedPolicy));
        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
        var workload = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" };

        var ex = await Assert.ThrowsAsync<RpcException>(() => registry.RegisterAsync(new RegisterRequest { Workload = workload }).ResponseAsync);

        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
    }

    [Fact]
    public async Task ConfigFolder_FixedAfterInvalidStart_BecomesReadyAndServesTheConfig()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("policy.yaml", MistypedPolicy));
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "policy.yaml"), MistypedPolicy.Replace("AuthorisationPolicy", "AuthorizationPolicy", StringComparison.Ordinal));

        var deadline = DateTime.UtcNow + AdsTestClient.Timeout;
        HttpStatusCode status;
        do
        {
            using var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
            status = ready.StatusCode;
            if (status != HttpStatusCode.OK)
            {
                Assert.True(DateTime.UtcNow < deadline, "still not ready after the folder was fixed: " + await ready.Content.ReadAsStringAsync());
                await Task.Yield();
            }
        }
        while (status != HttpStatusCode.OK);

        var response = await FirstResponseAsync(cp, TypeUrls.Cluster);
        Assert.Equal(OrdersCluster, Assert.Single(response.Resources).Unpack<Cluster>().Name);
    }

    [Fact]
    public async Task StreamAggregatedResources_FolderFixedDuringDebounce_UnavailableThenFullNeverEmpty()
    {
        // One debounce: the folder is read right before its translation, so there is no window in which the store holds
        // the fixed folder while the only snapshot is the empty one built at start. During the debounce the stream is
        // refused (the store is still invalid); after it, the first response carries the fixed config, never nothing.
        await using var cp = await ControlPlaneFixture.StartAsync(["--ControlPlane:DebounceInterval=00:00:05"], ("orders.yaml", Orders), ("policy.yaml", MistypedPolicy));
        File.Delete(Path.Combine(cp.ConfigDirectory, "policy.yaml"));

        var ex = await Assert.ThrowsAsync<RpcException>(() => FirstResponseAsync(cp, TypeUrls.Cluster));
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
        using (var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }

        await Poll.UntilAsync(
            async () =>
            {
                using var dump = System.Text.Json.JsonDocument.Parse(await cp.Admin.GetStringAsync(new Uri("/debug/config_dump", UriKind.Relative)));
                return dump.RootElement.GetProperty("configErrors").GetArrayLength() == 0;
            },
            "the fixed folder was not loaded");
        RpcException? refused = null;
        DiscoveryResponse? response = null;
        await Poll.UntilAsync(
            async () =>
            {
                try
                {
                    response = await FirstResponseAsync(cp, TypeUrls.Cluster);
                    return true;
                }
                catch (RpcException unavailable) when (unavailable.StatusCode == StatusCode.Unavailable)
                {
                    // The translation of the loaded folder is still under way.
                    refused = unavailable;
                    return false;
                }
            },
            "ADS still refused after the fixed folder was loaded: " + refused?.Status.Detail);
        Assert.Equal(OrdersCluster, Assert.Single(response!.Resources).Unpack<Cluster>().Name);
    }

    private static async Task<DiscoveryResponse> FirstResponseAsync(ControlPlaneFixture cp, string typeUrl)
    {
        using var call = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.Channel)
            .StreamAggregatedResources(deadline: DateTime.UtcNow + AdsTestClient.Timeout);
        await call.RequestStream.WriteAsync(new DiscoveryRequest { TypeUrl = typeUrl, Node = AdsTestClient.Node() });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None), "the stream ended without a response");
        return call.ResponseStream.Current;
    }
}
