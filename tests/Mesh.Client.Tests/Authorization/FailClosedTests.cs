using System.Net;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Tests.Security;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// A registered secure-mode workload on real Kestrel, fed by a real ADS stream: its port answers 503 (no app code runs)
/// until its inbound policy arrives and again after the control plane removes it, but a lost control plane changes nothing.
/// </summary>
public sealed class FailClosedTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly TestCa _ca = new();
    private readonly string _rootFile = Path.GetTempFileName();
    private TestControlPlane _controlPlane = null!;

    public async Task InitializeAsync()
    {
        await File.WriteAllTextAsync(_rootFile, _ca.RootPem);
        _controlPlane = await TestControlPlane.StartAsync(_ca);
    }

    public async Task DisposeAsync()
    {
        await _controlPlane.DisposeAsync();
        _ca.Dispose();
        File.Delete(_rootFile);
    }

    [Fact]
    public async Task MeshPort_BeforePolicyAfterRemovalAndWhileControlPlaneIsDown_503ThenServesThenKeepsServingThen503()
    {
        var reached = 0;
        await using var app = BuildWorkload(() => Interlocked.Increment(ref reached));
        await app.StartAsync();
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single()).Port;
        var health = app.Services.GetRequiredService<HealthCheckService>();
        using var http = MtlsClient();
        var uri = new Uri($"https://127.0.0.1:{port}/");
        var inbound = $"xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}";

        // Registered and subscribed, no policy yet: 503 naming the port, the app never runs.
        await WaitForListenerRequestAsync(inbound);
        var before = await GetAsync(http, uri);
        Assert.Equal((HttpStatusCode.ServiceUnavailable, $"mesh: inbound policy for port {port} not received"), before);

        // Config without this workload's inbound listener: synced, but still not received, still not ready.
        await _controlPlane.SendAsync(Lds("1"));
        await _controlPlane.SendAsync(Cds("1"));
        await app.Services.GetRequiredService<XdsClient>().FirstSnapshot.WaitAsync(Deadline);
        Assert.Equal((HttpStatusCode.ServiceUnavailable, $"mesh: inbound policy for port {port} not received"), await GetAsync(http, uri));
        var waiting = (await health.CheckHealthAsync()).Entries["mesh"];
        Assert.Equal(HealthStatus.Unhealthy, waiting.Status);
        Assert.Contains($"inbound policy (PeerAuthentication, AuthorizationPolicy) of {inbound} has not arrived yet", waiting.Description, StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref reached));

        // The policy arrives: served, ready.
        await _controlPlane.SendAsync(Lds("2", IstioPolicies.Listener([], (uint)port)));
        await PollAsync(http, uri, HttpStatusCode.OK, "app");
        Assert.Equal(HealthStatus.Healthy, (await health.CheckHealthAsync()).Entries["mesh"].Status);

        // The control plane goes away: the last good policy keeps serving (static stability).
        await _controlPlane.StopAsync();
        await Poll.UntilAsync(() => !app.Services.GetRequiredService<XdsClient>().IsConnected, "the ADS stream to end", Deadline);
        Assert.Equal((HttpStatusCode.OK, "app"), await GetAsync(http, uri));
        Assert.Equal(HealthStatus.Healthy, (await health.CheckHealthAsync()).Entries["mesh"].Status);

        // Back, and it no longer sends this workload's inbound listener: the policy is removed, the port fails closed.
        await _controlPlane.RestartAsync();
        await _controlPlane.SendAsync(Lds("3"));
        await PollAsync(http, uri, HttpStatusCode.ServiceUnavailable, $"mesh: inbound policy for port {port} was removed by the control plane");
        var servedBefore = Volatile.Read(ref reached);
        var removed = (await health.CheckHealthAsync()).Entries["mesh"];
        Assert.Equal(HealthStatus.Unhealthy, removed.Status);
        Assert.Contains($"the control plane removed the inbound policy (PeerAuthentication, AuthorizationPolicy) of {inbound}", removed.Description, StringComparison.Ordinal);
        Assert.Equal((HttpStatusCode.ServiceUnavailable, $"mesh: inbound policy for port {port} was removed by the control plane"), await GetAsync(http, uri));
        Assert.Equal(servedBefore, Volatile.Read(ref reached));
        await app.StopAsync();
    }

    [Fact]
    public async Task MeshPort_PolicyForOnePortOnly_TheWorkloadsOtherPortStaysClosed()
    {
        var reached = 0;
        await using var app = BuildWorkload(() => Interlocked.Increment(ref reached), ports: 2);
        await app.StartAsync();
        var ports = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Select(a => new Uri(a).Port).Order().ToArray();
        using var http = MtlsClient();
        await WaitForListenerRequestAsync($"xds.istio.io/grpc/lds/inbound/127.0.0.1:{ports[1]}");

        // Only the first port's policy arrives: the second port stays closed; a policy for one port opens no other.
        await _controlPlane.SendAsync(Lds("1", IstioPolicies.Listener([], (uint)ports[0])));
        await PollAsync(http, new Uri($"https://127.0.0.1:{ports[0]}/"), HttpStatusCode.OK, "app");
        Assert.Equal(
            (HttpStatusCode.ServiceUnavailable, $"mesh: inbound policy for port {ports[1]} not received"),
            await GetAsync(http, new Uri($"https://127.0.0.1:{ports[1]}/")));
        Assert.Equal(1, Volatile.Read(ref reached));
        await app.StopAsync();
    }

    private WebApplication BuildWorkload(Action onRequest, int ports = 1)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Address"] = _controlPlane.Address.ToString(),
            ["Mesh:ControlPlane:RootCertificate"] = _rootFile,
            ["Mesh:ControlPlane:MaxReconnectDelay"] = "00:00:01",
            ["Mesh:Identity:Token"] = TestCaServer.Token,
            ["Mesh:Service"] = "orders",
            ["Mesh:Inbound:Mode"] = "Permissive",
        });
        builder.AddServiceMesh();
        builder.WebHost.ConfigureKestrel(k =>
        {
            for (var i = 0; i < ports; i++)
            {
                k.Listen(IPAddress.Loopback, 0);
            }
        });
        var app = builder.Build();
        app.MapGet("/", () =>
        {
            onRequest();
            return "app";
        });
        return app;
    }

    /// <summary>A plain HttpClient presenting frontend's SVID and expecting orders' SVID from the workload.</summary>
    private HttpClient MtlsClient() => new(new SocketsHttpHandler
    {
        SslOptions =
        {
            ClientCertificates = [_ca.Issue([TestCa.Id("frontend")])],
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                certificate is System.Security.Cryptography.X509Certificates.X509Certificate2 leaf
                && SvidValidator.TryValidate(leaf, [], _ca.Bundle, "cluster.local", DateTimeOffset.UtcNow, out var id, out _)
                && id!.Value == TestCa.Id("orders"),
        },
    })
    {
        Timeout = TimeSpan.FromSeconds(10),
    };

    private async Task WaitForListenerRequestAsync(string inboundName)
    {
        using var cts = new CancellationTokenSource(Deadline);
        while (true)
        {
            var request = await _controlPlane.NextRequestAsync(XdsTypeUrls.Listener, Deadline).WaitAsync(cts.Token);
            if (request.ResourceNames.Contains(inboundName))
            {
                return;
            }
        }
    }

    private static async Task<(HttpStatusCode, string)> GetAsync(HttpClient http, Uri uri)
    {
        using var response = await http.GetAsync(uri);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task PollAsync(HttpClient http, Uri uri, HttpStatusCode status, string body)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var got = await GetAsync(http, uri);
            if (got == (status, body))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"{uri} still answers {got} instead of {(status, body)}");
            await Task.Delay(20);
        }
    }
}
