using Mesh.Client.Registration;
using Mesh.Client.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Registration;

public sealed class WorkloadRegistrationServiceTests
{
    [Fact]
    public async Task WebApp_Lifecycle_RegistersRenewsReRegistersAndDeregisters()
    {
        await using var controlPlane = await TestControlPlane.StartAsync();
        await using var app = await StartWebAppAsync(controlPlane, new()
        {
            ["Mesh:Service"] = "orders",
            ["Mesh:Labels:version"] = "v1",
            ["Mesh:Registration:LeaseTtl"] = "00:00:01",
        });
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()).Port;

        var registry = controlPlane.Registry;
        await Poll.UntilAsync(() => !registry.Registrations.IsEmpty, "the first registration");
        var registration = registry.Registrations.First();
        Assert.Equal("127.0.0.1", registration.Workload.Address);
        Assert.Equal(new Dictionary<string, uint> { ["http"] = (uint)port }, registration.Workload.Ports);
        Assert.Equal("default", registration.Workload.Namespace);
        Assert.Equal("orders", registration.Workload.ServiceAccount);
        Assert.Equal("orders", registration.Workload.Labels["app"]);
        Assert.Equal("v1", registration.Workload.Labels["version"]);
        Assert.Equal(TimeSpan.FromSeconds(1), registration.LeaseTtl.ToTimeSpan());

        await Poll.UntilAsync(() => registry.Renewals.Contains("lease-1"), "a renewal of lease-1");

        registry.Leases.Clear();
        await Poll.UntilAsync(() => registry.Registrations.Count >= 2, "a new registration after NOT_FOUND");
        await Poll.UntilAsync(() => registry.Leases.ContainsKey("lease-2"), "lease-2 granted");

        // The client has adopted lease-2 once it renews it (the grant above may still be in flight back to it).
        await Poll.UntilAsync(() => registry.Renewals.Contains("lease-2"), "a renewal of lease-2");

        await app.StopAsync();

        Assert.Equal(["lease-2"], registry.Deregistrations);
        Assert.Empty(registry.Leases);
    }

    [Fact]
    public async Task WebApp_ControlPlaneUnavailable_KeepsRetryingAndRegistersWhenBack()
    {
        await using var controlPlane = await TestControlPlane.StartAsync();
        controlPlane.Registry.Unavailable = true;
        await using var app = await StartWebAppAsync(controlPlane, new()
        {
            ["Mesh:ControlPlane:InitialReconnectDelay"] = "00:00:00.020",
            ["Mesh:ControlPlane:MaxReconnectDelay"] = "00:00:00.100",
            ["Mesh:Service"] = "orders",
            ["Mesh:Registration:Address"] = "10.1.2.3",
        });

        controlPlane.Registry.Unavailable = false;
        await Poll.UntilAsync(() => !controlPlane.Registry.Registrations.IsEmpty, "a registration once the control plane is back");
        await app.StopAsync();

        Assert.Equal("10.1.2.3", controlPlane.Registry.Registrations.First().Workload.Address);
    }

    [Fact]
    public async Task WebApp_ControlPlaneBrieflyUnavailable_KeepsItsLease_NoSecondRegistration()
    {
        await using var controlPlane = await TestControlPlane.StartAsync();
        await using var app = await StartWebAppAsync(controlPlane, new()
        {
            ["Mesh:ControlPlane:InitialReconnectDelay"] = "00:00:00.020",
            ["Mesh:ControlPlane:MaxReconnectDelay"] = "00:00:00.100",
            ["Mesh:Service"] = "orders",
            ["Mesh:Registration:LeaseTtl"] = "00:00:01",
        });
        var registry = controlPlane.Registry;
        await Poll.UntilAsync(() => registry.Renewals.Contains("lease-1"), "a renewal of lease-1");

        // A restart that keeps the lease (the control plane persists leases): renewals fail for a while, then work.
        registry.Unavailable = true;
        await Poll.UntilAsync(() => Volatile.Read(ref registry.Refused) >= 2, "two refused renewals");
        var renewalsBefore = registry.Renewals.Count;
        registry.Unavailable = false;
        await Poll.UntilAsync(() => registry.Renewals.Count > renewalsBefore, "a renewal after the control plane came back");

        Assert.Single(registry.Registrations); // the same lease was renewed: no duplicate WorkloadEntry
        Assert.Equal("lease-1", registry.Renewals.Last());
        await app.StopAsync();
        Assert.Equal(["lease-1"], registry.Deregistrations);
    }

    [Fact]
    public async Task Gate_RegistersWhileReady_LeavesWhenNotReady_ComesBackWhenReadyAgain()
    {
        // As Kubernetes keeps a Pod in its Service's endpoints only while it is ready (a sidecar's app answering).
        await using var controlPlane = await TestControlPlane.StartAsync();
        var gate = new SwitchGate();
        await using var app = await StartWebAppAsync(controlPlane, new() { ["Mesh:Service"] = "orders", ["Mesh:Registration:LeaseTtl"] = "00:00:01" }, gate);
        var registry = controlPlane.Registry;

        // Not ready: no endpoint yet, whatever the time it takes (a renewal would show here).
        await Poll.UntilAsync(() => gate.Waits > 0, "the registration to wait for readiness");
        Assert.Empty(registry.Registrations);

        gate.Ready();
        await Poll.UntilAsync(() => registry.Renewals.Contains("lease-1"), "lease-1 registered and renewed once ready");

        gate.NotReady();
        await Poll.UntilAsync(() => registry.Deregistrations.Contains("lease-1"), "the not-ready workload to leave the mesh");
        Assert.Empty(registry.Leases);

        gate.Ready();
        await Poll.UntilAsync(() => registry.Renewals.Contains("lease-2"), "a new lease once ready again");

        await app.StopAsync();
        Assert.Equal(["lease-1", "lease-2"], registry.Deregistrations);
    }

    [Fact]
    public async Task WebApp_Ipv6Address_AsksForItsInboundListenersByTheNameTheControlPlaneGives()
    {
        // The control plane names an IPv6 workload's listener [fd00::1]:port (InboundListenerTranslator.ListenerName); asked
        // for as fd00::1:port, no policy would ever arrive and every port would answer 503 (found in review 2026-12-05).
        await using var controlPlane = await TestControlPlane.StartAsync();
        await using var app = await StartWebAppAsync(controlPlane, new() { ["Mesh:Service"] = "orders", ["Mesh:Registration:Address"] = "fd00::1" });
        var store = app.Services.GetRequiredService<Mesh.Client.Authorization.InboundPolicyStore>();

        await Poll.UntilAsync(() => store.Names.Count > 0, "the inbound listeners to be asked for");

        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        Assert.Equal([Mesh.ControlPlane.Xds.InboundListenerTranslator.ListenerName("fd00::1", (uint)port)], store.Names);
        Assert.Equal($"xds.istio.io/grpc/lds/inbound/[fd00::1]:{port}", store.Names.Single());
    }

    /// <summary>A readiness the test switches: each wait completes on the next switch to its state.</summary>
    private sealed class SwitchGate : IWorkloadRegistrationGate
    {
        private readonly Lock _gate = new();
        private TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private TaskCompletionSource _notReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _waits;

        public int Waits => Volatile.Read(ref _waits);

        public void Ready()
        {
            lock (_gate)
            {
                _notReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
                _ready.TrySetResult();
            }
        }

        public void NotReady()
        {
            lock (_gate)
            {
                _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
                _notReady.TrySetResult();
            }
        }

        public Task WaitUntilReadyAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _waits);
            lock (_gate)
            {
                return _ready.Task.WaitAsync(cancellationToken);
            }
        }

        public Task WaitUntilNotReadyAsync(CancellationToken cancellationToken)
        {
            lock (_gate)
            {
                return _notReady.Task.WaitAsync(cancellationToken);
            }
        }
    }

    /// <summary>A started web app on an ephemeral port with <c>AddServiceMesh()</c> pointed at <paramref name="controlPlane"/>.</summary>
    private static async Task<WebApplication> StartWebAppAsync(TestControlPlane controlPlane, Dictionary<string, string?> settings, IWorkloadRegistrationGate? gate = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        settings["Mesh:ControlPlane:Address"] = controlPlane.Address.ToString();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddServiceMesh();
        if (gate is not null)
        {
            builder.Services.AddSingleton(gate);
        }

        var app = builder.Build();
        await app.StartAsync();
        return app;
    }

    [Fact]
    public async Task GenericHost_NoServer_StartsWithoutRegistering()
    {
        await using var controlPlane = await TestControlPlane.StartAsync();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddLogging();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Address"] = controlPlane.Address.ToString(),
            ["Mesh:Service"] = "worker",
        });
        builder.AddServiceMesh();
        using var host = builder.Build();

        await host.StartAsync();
        await controlPlane.NextRequestAsync(Mesh.Client.Xds.XdsTypeUrls.Listener);
        await host.StopAsync();

        Assert.Empty(controlPlane.Registry.Registrations);
    }
}

public sealed class WorkloadRegistrationIdentityTests
{
    [Fact]
    public void BuildWorkload_SecureMode_RegistersAsTheCertifiedIdentity_NotTheConfiguredOne()
    {
        using var ca = new Security.TestCa();
        var services = new ServiceCollection()
            .AddSingleton<IServer>(new AddressesOnlyServer("http://127.0.0.1:5005"))
            .AddSingleton<Mesh.Client.Security.IWorkloadCertificateSource>(ca.Store(ca.Issue([Security.TestCa.Id("orders")])))
            .BuildServiceProvider();
        var options = Microsoft.Extensions.Options.Options.Create(new ServiceMeshOptions { Service = "orders", Namespace = "elsewhere", ServiceAccount = "configured" });
        using var registration = new Mesh.Client.Registration.WorkloadRegistrationService(
            options, services, channel: null!, lifetime: null!, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<Mesh.Client.Registration.WorkloadRegistrationService>.Instance);

        var workload = registration.BuildWorkload();

        Assert.NotNull(workload);
        Assert.Equal("default", workload.Namespace);
        Assert.Equal("orders", workload.ServiceAccount);
        Assert.Equal(5005u, workload.Ports["http"]);
    }

    private sealed class AddressesOnlyServer : IServer
    {
        public AddressesOnlyServer(string address)
        {
            var addresses = new Microsoft.AspNetCore.Hosting.Server.Features.ServerAddressesFeature();
            addresses.Addresses.Add(address);
            Features.Set<IServerAddressesFeature>(addresses);
        }

        public Microsoft.AspNetCore.Http.Features.IFeatureCollection Features { get; } = new Microsoft.AspNetCore.Http.Features.FeatureCollection();

        public Task StartAsync<TContext>(Microsoft.AspNetCore.Hosting.Server.IHttpApplication<TContext> application, CancellationToken cancellationToken)
            where TContext : notnull => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose()
        {
        }
    }
}
