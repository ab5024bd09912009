using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Grpc.Core;
using Mesh.ControlPlane.Tests.Integration;
using Mesh.ControlPlane.Tests.Security;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Istio.Auth.V1;
using Mesh.Xds.Registry.V1;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Mesh.ControlPlane.Tests;

/// <summary>The plaintext ADS port (ControlPlane:XdsAddress): off unless configured, and then config only.</summary>
public class ControlPlaneHostTests
{
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

    [Fact]
    public async Task StartAsync_DefaultOptions_BindsNoPlaintextXdsPort()
    {
        await using var cp = await SecureHost.StartAsync();

        var match = Regex.Match(cp.Host.ReadyLine, @"^Mesh control plane ready: xds=(\S+) admin=(\S+) secure=(\S+)$");
        Assert.True(match.Success, cp.Host.ReadyLine);
        Assert.Equal("off", match.Groups[1].Value);
        Assert.Null(cp.Host.XdsAddress);

        // Kestrel lists every endpoint it bound: the secure and admin ports, nothing else.
        var server = (IServer)cp.Host.Services.GetService(typeof(IServer))!;
        var bound = server.Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a).Port).Order();
        Assert.Equal(new[] { cp.Host.AdminAddress.Port, cp.Host.SecureAddress.Port }.Order(), bound);
    }

    [Fact]
    public async Task StartAsync_KestrelSectionInConfiguration_BindsOnlyControlPlanePorts()
    {
        // An app's appsettings.json in the working directory (the README runs the tool beside the app) has Kestrel
        // endpoints; the port is held here, so binding it would fail the control plane's start.
        using var appPort = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        appPort.Start();
        var port = ((System.Net.IPEndPoint)appPort.LocalEndpoint).Port;

        await using var cp = await SecureHost.StartAsync(null, [$"--Kestrel:Endpoints:Http:Url=http://127.0.0.1:{port}"], plaintextXds: false, configureServices: null);

        var server = (IServer)cp.Host.Services.GetService(typeof(IServer))!;
        var bound = server.Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a).Port).Order();
        Assert.Equal(new[] { cp.Host.AdminAddress.Port, cp.Host.SecureAddress.Port }.Order(), bound);
    }

    [Fact]
    public async Task StartAsync_XdsAddressSet_PlaintextPortServesAdsButNoCertificatesOrRegistrations()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true, files: ("orders.yaml", Orders));
        Assert.Matches(@"^Mesh control plane ready: xds=http://127\.0\.0\.1:[1-9]\d* ", cp.Host.ReadyLine);
        var plaintext = cp.PlaintextChannel();

        await using (var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(plaintext).StreamAggregatedResources()))
        {
            await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
            var clusters = await ads.NextAsync();
            Assert.Equal(TypeUrls.Cluster, clusters.TypeUrl);
            Assert.Single(clusters.Resources);
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var certificate = await Assert.ThrowsAsync<RpcException>(() => new IstioCertificateService.IstioCertificateServiceClient(plaintext).CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key) }, SecureHost.Bearer(cp.Token("default", "orders"))).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, certificate.StatusCode);

        var registration = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(plaintext).RegisterAsync(new RegisterRequest
        {
            Workload = new WorkloadEntry { Namespace = "default", Address = "127.0.0.1", Ports = { ["http"] = 5001 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" },
        }).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, registration.StatusCode);
    }
}
