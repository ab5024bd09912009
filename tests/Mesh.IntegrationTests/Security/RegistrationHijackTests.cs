using System.Net;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Registry.V1;
using static Mesh.IntegrationTests.Security.SecurityKit;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// Issue 7: frontend registered orders' address:port with its own labels, and orders' inbound listener (its DENY rule)
/// was then built from frontend's labels. An address:port now belongs to the identity that registered it.
/// </summary>
public sealed class RegistrationHijackTests(ITestOutputHelper output)
{
    private const string ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener";

    private const string DenyPolicy = """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: orders-deny-13
          namespace: default
        spec:
          selector:
            matchLabels:
              app: orders
          action: DENY
          rules:
            - to:
                - operation:
                    paths: ["/orders/13"]
        """;

    [Fact]
    public async Task FrontendCredential_RegistersOrdersAddress_RefusedAndOrdersKeepsItsDenyRule()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "policy.yaml"), DenyPolicy);
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        await mesh.WaitForEndpointsAsync("orders", 1);
        var address = orders.Address.Host;
        var port = (uint)orders.Address.Port;

        var scratch = Directory.CreateTempSubdirectory("mesh-secit-hijack-").FullName;
        try
        {
            using var probe = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "probe", Path.Combine(scratch, "probe")));
            await Eventually.HoldsAsync(async () => await StatusAsync(probe, orders) == HttpStatusCode.Forbidden, "orders to enforce its DENY rule");

            // The attacker holds frontend's credential (its SVID) and asks for orders' address:port with frontend's labels.
            using var frontend = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "frontend", Path.Combine(scratch, "frontend")));
            using var channel = GrpcChannel.ForAddress(mesh.ControlPlane.SecureAddress, new GrpcChannelOptions { HttpClient = frontend });
            var hijack = new RegisterRequest
            {
                Workload = new WorkloadEntry { Namespace = "default", Address = address, Ports = { ["http"] = port }, Labels = { ["app"] = "frontend" }, ServiceAccount = "frontend" },
            };
            var refused = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(channel).RegisterAsync(hijack).ResponseAsync);
            output.WriteLine($"hijack: {refused.StatusCode}: {refused.Status.Detail}");

            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
            Assert.Contains($"{address}:{port}", refused.Status.Detail, StringComparison.Ordinal);
            Assert.Contains($"held by {SpiffeId("orders")}", refused.Status.Detail, StringComparison.Ordinal);
            Assert.Contains($"{SpiffeId("frontend")} may not register it", refused.Status.Detail, StringComparison.Ordinal);

            // A later config change makes a new snapshot: once it is served, orders' inbound listener is what it gets.
            await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "canary.yaml"), """
                apiVersion: networking.istio.io/v1
                kind: ServiceEntry
                metadata: {name: canary, namespace: default}
                spec:
                  hosts: [canary.default.svc.cluster.local]
                  ports: [{number: 80, name: http, protocol: HTTP}]
                  resolution: STATIC
                  endpoints: [{address: 127.0.0.9}]
                """);
            await mesh.WaitForEndpointsAsync("canary", 1);
            var policies = await InboundPoliciesAsync(mesh, scratch, address, port);
            using var dump = await mesh.ConfigDumpAsync();
            var endpoints = dump.RootElement.GetProperty("services").EnumerateArray()
                .Where(s => s.GetProperty("host").GetString() == "frontend.default.svc.cluster.local")
                .Sum(s => s.GetProperty("endpoints").GetArrayLength());
            var status = await StatusAsync(probe, orders);
            Console.WriteLine($"[registration-hijack] sa/frontend registering {address}:{port} (orders): {refused.StatusCode}; orders' inbound DENY policies [{string.Join(", ", policies)}]; frontend endpoints {endpoints}; GET /orders/13 → {(int)status}");
            Assert.Equal(["ns[default]-policy[orders-deny-13]-rule[0]"], policies);
            Assert.Equal(0, endpoints);
            Assert.Equal(HttpStatusCode.Forbidden, status);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    [Fact]
    public async Task RenewedCertificate_AdsStreamReopensPresentingIt()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var shortLived = new Dictionary<string, string?> { ["Mesh__Identity__CertificateTtl"] = "00:01:00" };
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", shortLived);
        var first = await StreamCertificateAsync(mesh, _ => true);

        // Renewal at half life (~30 s): the control plane must then see an ADS stream on the new certificate, before the old one expires.
        var renewed = await Eventually.ReturnsAsync(
            () => StreamCertificateAsync(mesh, _ => true),
            c => c.Serial != first.Serial,
            "the ADS stream of orders to present the renewed certificate",
            TimeSpan.FromSeconds(90));
        var seenAt = DateTimeOffset.UtcNow;
        var issued = System.Text.RegularExpressions.Regex.Matches(orders.Process.Output, @"Workload certificate for \S+ issued \(serial (\w+)").Select(m => m.Groups[1].Value).ToList();
        Console.WriteLine($"[ads-rotation] orders' ADS stream certificate {first.Serial} (until {first.NotAfter:O}) → {renewed.Serial} (until {renewed.NotAfter:O}); issued serials [{string.Join(", ", issued)}]");
        // Reopened at the renewal, not only when the control plane ends the stream at the old certificate's expiry.
        Assert.True(seenAt < first.NotAfter - TimeSpan.FromSeconds(5), $"the renewed certificate was first seen on an ADS stream at {seenAt:O}, the old one ends {first.NotAfter:O}");
        Assert.True(renewed.NotAfter > first.NotAfter, $"the stream's new certificate ends {renewed.NotAfter:O}, not after the first ({first.NotAfter:O})");
        Assert.Contains(issued, s => string.Equals(s, renewed.Serial, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>The certificate of orders' ADS stream as the control plane's /debug/clients shows it.</summary>
    private static async Task<(string Serial, DateTimeOffset NotAfter)> StreamCertificateAsync(LocalMesh mesh, Func<JsonElement, bool> filter) =>
        await Eventually.ReturnsAsync(
            async () =>
            {
                using var dump = await mesh.ConfigDumpAsync();
                foreach (var client in dump.RootElement.GetProperty("clients").EnumerateArray())
                {
                    if (client.TryGetProperty("identity", out var identity) && identity.GetString() == SpiffeId("orders") && filter(client)
                        && client.GetProperty("certificateSerial").GetString() is { } serial)
                    {
                        return (serial, client.GetProperty("certificateNotAfter").GetDateTimeOffset());
                    }
                }

                return (string.Empty, DateTimeOffset.MinValue);
            },
            c => c.Item1.Length > 0,
            "an ADS stream of orders");

    /// <summary>Asks the control plane for the inbound listener of address:port as orders (its SVID) and returns its DENY policy names.</summary>
    private static async Task<List<string>> InboundPoliciesAsync(LocalMesh mesh, string scratch, string address, uint port)
    {
        using var owner = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "orders", Path.Combine(scratch, "orders")));
        using var channel = GrpcChannel.ForAddress(mesh.ControlPlane.SecureAddress, new GrpcChannelOptions { HttpClient = owner });
        using var call = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(channel).StreamAggregatedResources();
        var name = $"xds.istio.io/grpc/lds/inbound/{address}:{port}";
        await call.RequestStream.WriteAsync(new DiscoveryRequest { TypeUrl = ListenerType, ResourceNames = { name } });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        Assert.True(await call.ResponseStream.MoveNext(timeout.Token), "no LDS response");
        var listener = Assert.Single(call.ResponseStream.Current.Resources).Unpack<Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        await call.RequestStream.CompleteAsync();
        return [.. manager.HttpFilters.Where(f => f.Name == "envoy.filters.http.rbac")
            .Select(f => f.TypedConfig.Unpack<HttpRbac>().Rules)
            .Where(r => r.Action == Mesh.Xds.Envoy.Config.Rbac.V3.RBAC.Types.Action.Deny)
            .SelectMany(r => r.Policies.Keys)];
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient mtls, WorkloadProcess workload)
    {
        using var response = await mtls.GetAsync(Https(workload, "/orders/13"));
        return response.StatusCode;
    }
}
