using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Security;

/// <summary>An app with AddServiceMesh() in secure mode: identity from the CA, inbound mTLS on its Kestrel endpoint.</summary>
public sealed class SecureModeHostTests : IAsyncLifetime
{
    private readonly TestCa _ca = new(intermediate: true);
    private readonly string _rootFile = Path.GetTempFileName();
    private TestCaServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await TestCaServer.StartAsync(_ca);
        await File.WriteAllTextAsync(_rootFile, _ca.RootPem);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _ca.Dispose();
        File.Delete(_rootFile);
    }

    [Fact]
    public async Task AddServiceMesh_SecureMode_ReadyAfterCertificateAndServesMtlsOnlyUnderStrict()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Address"] = _server.Address.ToString(),
            ["Mesh:ControlPlane:RootCertificate"] = _rootFile,
            ["Mesh:Identity:Token"] = TestCaServer.Token,
            ["Mesh:Inbound:Mode"] = "Strict",
        });
        builder.AddServiceMesh();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        await using var app = builder.Build();
        app.MapGet("/", (HttpContext context) => $"{context.User.FindFirst(MeshClaimTypes.SpiffeId)?.Value}|{context.Request.Protocol}|{context.Request.Host}");
        var health = app.Services.GetRequiredService<HealthCheckService>();
        var store = app.Services.GetRequiredService<WorkloadCertificateStore>();

        await app.StartAsync();
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single()).Port;
        var readiness = (await health.CheckHealthAsync()).Entries["mesh"];

        await using var client = Client(port);
        var http = client.GetRequiredService<IHttpClientFactory>().CreateClient();
        var h1 = await http.GetStringAsync(new Uri("http://orders/"));
        var h2 = await http.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact });
        using var plain = new HttpClient();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetStringAsync(new Uri($"http://127.0.0.1:{port}/")));
        await app.StopAsync();

        Assert.Equal(TestCa.Id("orders"), store.Current!.Id.Value);
        Assert.Equal(TestCa.Id("orders"), readiness.Data["spiffeId"]);
        Assert.Equal($"{TestCa.Id("frontend")}|HTTP/1.1|orders", h1);
        Assert.Equal($"{TestCa.Id("frontend")}|HTTP/2|orders", await h2.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ExcludeFromServiceMesh_LocalEndpointServesPlaintextUnderStrict_MeshEndpointStillRefuses_NotRegistered()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Mesh:Service"] = "orders",
            ["Mesh:ControlPlane:Address"] = _server.Address.ToString(),
            ["Mesh:ControlPlane:RootCertificate"] = _rootFile,
            ["Mesh:Identity:Token"] = TestCaServer.Token,
            ["Mesh:Inbound:Mode"] = "Strict",
        });
        builder.AddServiceMesh();
        ListenOptions? local = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0);
            k.Listen(IPAddress.Loopback, 0, listen => local = listen.ExcludeFromServiceMesh());
        });
        await using var app = builder.Build();
        app.MapGet("/", (HttpContext context) => $"identities={context.User.Identities.Count(i => i.IsAuthenticated)}");
        var store = app.Services.GetRequiredService<WorkloadCertificateStore>();

        await app.StartAsync();
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        var localPort = local!.IPEndPoint!.Port;
        var meshPort = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses
            .Select(address => new Uri(address).Port)
            .Single(port => port != localPort);
        using var plain = new HttpClient();
        var fromLocal = await plain.GetStringAsync(new Uri($"http://127.0.0.1:{localPort}/"));
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetStringAsync(new Uri($"http://127.0.0.1:{meshPort}/")));
        await using var client = Client(meshPort);
        using var overMtls = await client.GetRequiredService<IHttpClientFactory>().CreateClient().GetAsync(new Uri("http://orders/"));
        var workload = app.Services.GetRequiredService<Mesh.Client.Registration.WorkloadRegistrationService>().BuildWorkload();
        await app.StopAsync();

        // The local endpoint reaches the app without the mesh's checks; the mesh endpoint under STRICT refuses plaintext,
        // and over mTLS fails closed while its inbound policy has not arrived (a registered workload's port).
        Assert.Equal("identities=0", fromLocal);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, overMtls.StatusCode);
        Assert.Equal([(uint)meshPort], workload!.Ports.Values);
    }

    private ServiceProvider Client(int port)
    {
        var name = TestSnapshots.Names.Qualify("orders");

        // The app's identity comes from the CA for the token (sa "orders" in the test CA); any ID of the domain is accepted here.
        var cluster = new MeshCluster($"outbound|80||{name}", name, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(port)], tls: new UpstreamTlsSettings([]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]);
        var services = MeshServices.Create(new FixedSnapshotSource(snapshot));
        services.AddSingleton<IWorkloadCertificateSource>(_ca.Store(_ca.Issue([TestCa.Id("frontend")])));
        return services.BuildServiceProvider();
    }
}
