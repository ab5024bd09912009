using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Mesh.Client;
using Mesh.Samples.Processes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>
/// A mesh of real processes on 127.0.0.1 for one test: the control plane (config folder and state
/// folder in a temp directory) and sample workloads, each a separate `dotnet app.dll`.
/// </summary>
internal sealed class LocalMesh : IAsyncDisposable
{
    public static readonly string DemoServicesYaml = Path.Combine(Repository.Root, "samples", "Mesh.Demo", "mesh-config", "services.yaml");

    /// <summary>Gets the number of ServiceEntries in the demo's services.yaml (frontend, orders, inventory, ratings).</summary>
    public static readonly int DemoServiceCount = File.ReadLines(DemoServicesYaml).Count(line => line.Trim() == "kind: ServiceEntry");

    private readonly ITestOutputHelper _output;
    private readonly string[] _controlPlaneArgs;
    private readonly List<WorkloadProcess> _workloads = [];
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
    private HttpClient? _probe;
    private readonly string _root;

    private LocalMesh(ITestOutputHelper output, string[] controlPlaneArgs)
    {
        _output = output;
        _controlPlaneArgs = controlPlaneArgs;
        _root = Directory.CreateTempSubdirectory("mesh-it-").FullName;
        ConfigDirectory = Directory.CreateDirectory(Path.Combine(_root, "config")).FullName;
        StateDirectory = Directory.CreateDirectory(Path.Combine(_root, "state")).FullName;
    }

    public string ConfigDirectory { get; }

    public string StateDirectory { get; }

    public ControlPlaneProcess ControlPlane { get; private set; } = null!;

    public IReadOnlyList<WorkloadProcess> Workloads => _workloads;

    /// <summary>Starts a control plane serving the demo's ServiceEntries (frontend, orders, inventory, ratings).</summary>
    /// <param name="fixedPorts">Use fixed ports so that <see cref="RestartControlPlaneAsync"/> comes back on the same address.</param>
    /// <param name="plaintextXds">Also serve the plaintext ADS port (off by default), for xDS clients without TLS to the control plane.</param>
    public static async Task<LocalMesh> StartAsync(ITestOutputHelper output, bool fixedPorts = false, bool plaintextXds = false, params string[] controlPlaneArgs)
    {
        var mesh = new LocalMesh(output, controlPlaneArgs);
        File.Copy(DemoServicesYaml, Path.Combine(mesh.ConfigDirectory, "services.yaml"));
        try
        {
            int? xdsPort = plaintextXds ? (fixedPorts ? Ports.Free() : 0) : null;
            mesh.ControlPlane = await mesh.StartControlPlaneAsync(xdsPort, fixedPorts ? Ports.Free() : 0, fixedPorts ? Ports.Free() : 0);

            // Readiness probes come in over mTLS with an identity of their own, so they work under STRICT too.
            mesh._probe = WorkloadCertificates.CreateMtlsClient(
                await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "mesh-probe", Path.Combine(mesh._root, "probe")));
        }
        catch
        {
            await mesh.DisposeAsync();
            throw;
        }

        return mesh;
    }

    public async Task<WorkloadProcess> StartWorkloadAsync(string app, string service, string instance, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var workload = await MeshProcesses.StartWorkloadAsync(Repository.App(app), service, instance, ControlPlane, environment);
        _workloads.Add(workload);
        return workload;
    }

    /// <summary>Starts a workload and waits until its readiness endpoint says it is synced with the mesh.</summary>
    public async Task<WorkloadProcess> StartReadyWorkloadAsync(string app, string service, string instance, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var workload = await StartWorkloadAsync(app, service, instance, environment);
        await WaitReadyAsync(workload);
        return workload;
    }

    public async Task WaitReadyAsync(WorkloadProcess workload)
    {
        await Eventually.HoldsAsync(
            async () =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, new UriBuilder(workload.Address) { Scheme = "https", Path = "/healthz/ready" }.Uri)
                {
                    Version = workload.Service == "inventory" ? HttpVersion.Version20 : HttpVersion.Version11,
                    VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                };
                using var response = await _probe!.SendAsync(request);
                return response.StatusCode == HttpStatusCode.OK;
            },
            $"{workload.Instance} to be ready");
    }

    /// <summary>Stops (SIGTERM) or kills (SIGKILL) the control plane and starts it again on the same ports with the same state folder.</summary>
    public async Task RestartControlPlaneAsync(bool kill)
    {
        var xdsPort = ControlPlane.XdsAddress?.Port;
        var adminPort = ControlPlane.AdminAddress.Port;
        var securePort = ControlPlane.SecureAddress.Port;
        if (kill)
        {
            await ControlPlane.Process.KillAsync();
        }
        else
        {
            await ControlPlane.Process.StopAsync(TimeSpan.FromSeconds(15));
        }

        Dump(ControlPlane.Process);
        ControlPlane = await StartControlPlaneAsync(xdsPort, adminPort, securePort);
    }

    public async Task<JsonDocument> ConfigDumpAsync() =>
        JsonDocument.Parse(await _http.GetStringAsync(new Uri(ControlPlane.AdminAddress, "/debug/config_dump")));

    /// <summary>Gets the number of endpoints the control plane holds for the service whose host starts with <paramref name="service"/>.</summary>
    public async Task<int> EndpointCountAsync(string service)
    {
        using var dump = await ConfigDumpAsync();
        foreach (var entry in dump.RootElement.GetProperty("services").EnumerateArray())
        {
            if (entry.GetProperty("host").GetString()!.StartsWith(service + ".", StringComparison.Ordinal))
            {
                return entry.GetProperty("endpoints").GetArrayLength();
            }
        }

        return 0;
    }

    public Task WaitForEndpointsAsync(string service, int count) =>
        Eventually.ReturnsAsync(() => EndpointCountAsync(service), n => n == count, $"{count} registered endpoint(s) of {service}");

    /// <summary>
    /// Builds a host in this test process that joins the mesh as a client (no registration) over the secure port,
    /// as spiffe://cluster.local/ns/default/sa/test-client, with an HttpClient named "mesh".
    /// <paramref name="configureHost"/> may add services (e.g. a logger provider) before the host is built.
    /// </summary>
    public async Task<IHost> CreateClientHostAsync(Action<ServiceMeshOptions>? configure = null, Action<HostApplicationBuilder>? configureHost = null)
    {
        var token = await ControlPlane.MintTokenAsync("test-client");
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.AddServiceMesh(options =>
        {
            options.ControlPlane.Address = ControlPlane.SecureAddress;
            options.ControlPlane.RootCertificate = ControlPlane.RootCertificate;
            options.Identity.Token = token;
            configure?.Invoke(options);
        });
        builder.Services.AddHttpClient("mesh");
        configureHost?.Invoke(builder);
        return builder.Build();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var workload in _workloads)
        {
            await workload.Process.DisposeAsync();
            Dump(workload.Process);
        }

        if (ControlPlane is not null)
        {
            await ControlPlane.Process.DisposeAsync();
            Dump(ControlPlane.Process);
        }

        _http.Dispose();
        _probe?.Dispose();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private Task<ControlPlaneProcess> StartControlPlaneAsync(int? xdsPort, int adminPort, int securePort) =>
        MeshProcesses.StartControlPlaneAsync(Repository.App("Mesh.ControlPlane"), ConfigDirectory, StateDirectory, xdsPort, adminPort, securePort, _controlPlaneArgs);

    private void Dump(ChildProcess process)
    {
        var output = process.Output;
        _output.WriteLine($"----- {process.Name} (pid {process.Id}) -----");
        _output.WriteLine(output.Length > 20_000 ? "…" + output[^20_000..] : output);
    }
}
