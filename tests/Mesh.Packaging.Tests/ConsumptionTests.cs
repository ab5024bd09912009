using System.Net;
using System.Text.Json;
using Mesh.Samples.Processes;

namespace Mesh.Packaging.Tests;

/// <summary>
/// The mesh as a user meets it: the control plane installed as a .NET tool, apps built against the Mesh.Client
/// package, the README's quick start as the calling app, mTLS on.
/// </summary>
[Collection(PackagedMeshGroup.Name)]
public sealed class ConsumptionTests(PackagedMesh mesh) : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private readonly List<IAsyncDisposable> _processes = [];
    private readonly string _run = Path.Combine(Path.GetTempPath(), $"mesh-consumer-{Guid.NewGuid():N}");

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(Path.Combine(_run, "config"));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var process in Enumerable.Reverse(_processes))
        {
            await process.DisposeAsync();
        }

        Directory.Delete(_run, recursive: true);
    }

    [Fact]
    public async Task QuickStart_FromPackages_CallsOrdersOverMtls()
    {
        await File.WriteAllTextAsync(Path.Combine(_run, "config", "mesh.yaml"), MeshConfig);
        var controlPlane = await StartControlPlaneAsync();
        var orders = await StartAppAsync(mesh.OrdersDll, "orders", controlPlane);
        var frontend = await StartAppAsync(mesh.FrontendDll, "frontend", controlPlane);

        // The quick start's one route: GET / calls http://orders/orders/42 through the mesh.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var body = await PollAsync(async () =>
        {
            using var response = await http.GetAsync(new Uri(frontend.Address, "/"));
            return response.StatusCode == HttpStatusCode.OK ? await response.Content.ReadAsStringAsync() : null;
        });

        // orders saw the frontend's SPIFFE ID, which only an mTLS handshake with the frontend's SVID gives it.
        Assert.Equal("order 42 for spiffe://cluster.local/ns/default/sa/frontend", body);
        // And orders (STRICT) takes nothing else: a plaintext caller on the same machine gets its connection closed.
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetStringAsync(new Uri(orders.Address, "/orders/42")));
        Assert.Null(refused.StatusCode);
    }

    [Theory]
    [InlineData("--ControlPlane:SecureAdress=https://127.0.0.1:0", "ControlPlane:SecureAdress is not a known setting")]
    [InlineData("--ControlPlane:SecureAddress=not-a-uri", "ControlPlane:SecureAddress must be")]
    public async Task Tool_BadOption_ExitsOneNamingTheKey(string option, string message)
    {
        var (exitCode, output) = await mesh.RunToExitAsync(mesh.ToolCommand, [option, $"--ControlPlane:StateDirectory={Path.Combine(_run, "state")}"], _run);

        Assert.Equal(1, exitCode);
        Assert.Contains(message, output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_run, "state")), "a refused start must not have made a state directory");
    }

    [Fact]
    public async Task ConsumerApp_WithoutControlPlane_FailsStartupNamingTheKey()
    {
        // The README's quick start with no Mesh configuration at all, run from the package-built app.
        var (exitCode, output) = await mesh.RunToExitAsync(
            "dotnet",
            [mesh.FrontendDll],
            Path.GetDirectoryName(mesh.FrontendDll)!,
            new Dictionary<string, string?> { ["ASPNETCORE_URLS"] = "http://127.0.0.1:0", ["ASPNETCORE_ENVIRONMENT"] = "Production" });

        Assert.NotEqual(0, exitCode);
        Assert.Contains("Mesh:ControlPlane:Address", output, StringComparison.Ordinal);
        Assert.Contains("OptionsValidationException", output, StringComparison.Ordinal);
        AssertMeshClientCameFromThePackage(mesh.FrontendDll);
    }

    [Fact]
    public async Task Tool_TokenFromADirectoryWithoutControlPlane_ExitsOneNamingTheKey()
    {
        // A global tool runs wherever the user is: minting there must not make a stray signing key.
        var (exitCode, output) = await mesh.RunToExitAsync(mesh.ToolCommand, ["token", "--namespace", "default", "--service-account", "frontend"], _run);

        Assert.Equal(1, exitCode);
        Assert.Contains($"No token signing key at {Path.Combine(_run, ".mesh-state", "ca", "token-signing-key.pem")}", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_run, ".mesh-state")));
    }

    [Fact]
    public void PackageReadme_QuickStart_CompilesAgainstThePackage()
    {
        // Built by the fixture from src/Mesh.Client/README.md's quick start, the text nuget.org shows.
        Assert.True(File.Exists(mesh.PackageReadmeDll), $"{mesh.PackageReadmeDll} was not built");
        AssertMeshClientCameFromThePackage(mesh.PackageReadmeDll);
    }

    /// <summary>The app's Mesh.Client is the package's assembly, byte for byte, resolved as a package (not a project).</summary>
    private void AssertMeshClientCameFromThePackage(string appDll)
    {
        var directory = Path.GetDirectoryName(appDll)!;
        using var deps = JsonDocument.Parse(File.ReadAllText(Path.ChangeExtension(appDll, ".deps.json")));
        var library = deps.RootElement.GetProperty("libraries").GetProperty($"Mesh.Client/{mesh.Version}");
        Assert.Equal("package", library.GetProperty("type").GetString());

        using var zip = System.IO.Compression.ZipFile.OpenRead(mesh.ClientPackage);
        foreach (var assembly in new[] { "Mesh.Client.dll", "Mesh.Xds.dll" })
        {
            using var packaged = new MemoryStream();
            using (var entry = zip.GetEntry($"lib/net10.0/{assembly}")!.Open())
            {
                entry.CopyTo(packaged);
            }

            Assert.Equal(packaged.ToArray(), File.ReadAllBytes(Path.Combine(directory, assembly)));
        }
    }

    private async Task<ControlPlaneProcess> StartControlPlaneAsync()
    {
        var process = await MeshProcesses.StartControlPlaneCommandAsync(
            mesh.ToolCommand, Path.Combine(_run, "config"), Path.Combine(_run, "state"), _run, mesh.Environment());
        _processes.Add(process.Process);
        return process;
    }

    /// <summary>Starts a package-built app as in the README: a token from the tool's token command, then the Mesh__ variables.</summary>
    private async Task<WorkloadProcess> StartAppAsync(string dll, string service, ControlPlaneProcess controlPlane)
    {
        var token = await mesh.RunAsync(
            mesh.ToolCommand,
            ["token", "--namespace", "default", "--service-account", service, $"--ControlPlane:StateDirectory={controlPlane.StateDirectory}"],
            _run);
        var environment = mesh.Environment();
        environment["ASPNETCORE_URLS"] = "http://127.0.0.1:0";
        environment["Mesh__ControlPlane__Address"] = controlPlane.SecureAddress.ToString();
        environment["Mesh__ControlPlane__RootCertificate"] = controlPlane.RootCertificate;
        environment["Mesh__Identity__Token"] = token.Trim();
        environment["Mesh__Identity__CredentialFile"] = Path.Combine(_run, $"{service}-credential.pem");
        var process = await MeshProcesses.StartWorkloadAsync(dll, service, service, environment);
        _processes.Add(process.Process);
        return process;
    }

    private static async Task<string> PollAsync(Func<Task<string?>> attempt)
    {
        var deadline = DateTime.UtcNow + Deadline;
        var last = "no attempt";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await attempt() is { } result)
                {
                    return result;
                }

                last = "not 200 yet";
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250));
        }

        throw new TimeoutException($"The quick start app did not answer 200 within {Deadline.TotalSeconds:0} s (last: {last})");
    }

    /// <summary>Two services as Istio ServiceEntries (instances register themselves), orders STRICT.</summary>
    private const string MeshConfig = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: frontend
          namespace: default
        spec:
          hosts: [frontend.default.svc.cluster.local]
          ports:
            - number: 80
              name: http
              protocol: HTTP
          resolution: STATIC
          workloadSelector:
            labels:
              app: frontend
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
          namespace: default
        spec:
          hosts: [orders.default.svc.cluster.local]
          ports:
            - number: 80
              name: http
              protocol: HTTP
          resolution: STATIC
          workloadSelector:
            labels:
              app: orders
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata:
          name: orders-strict
          namespace: default
        spec:
          selector:
            matchLabels:
              app: orders
          mtls:
            mode: STRICT
        """;
}
