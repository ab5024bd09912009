using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Mesh.Samples.Processes;

/// <summary>
/// A started control plane process and the addresses it printed in its ready line. <see cref="XdsAddress"/>, the
/// plaintext ADS port, is null unless it was asked for (the control plane serves it only when configured).
/// </summary>
public sealed record ControlPlaneProcess(ChildProcess Process, Uri? XdsAddress, Uri AdminAddress, Uri SecureAddress, string StateDirectory)
{
    /// <summary>Gets the plaintext ADS address, for xDS clients that cannot do TLS to the control plane.</summary>
    /// <exception cref="InvalidOperationException">The plaintext port is off.</exception>
    public Uri RequirePlaintextXds() => XdsAddress ?? throw new InvalidOperationException(
        "The plaintext xDS port is off; start the control plane with ControlPlane:XdsAddress (MeshProcesses.StartControlPlaneAsync(..., xdsPort: 0)).");

    /// <summary>Gets the mesh root certificate the control plane made in its state folder; workloads trust it on first contact.</summary>
    public string RootCertificate => Path.Combine(StateDirectory, "ca", "root-cert.pem");

    /// <summary>Gets the file holding the admin API's bearer credential (the control plane makes it on first start, mode 0600).</summary>
    public string AdminCredentialFile => Path.Combine(StateDirectory, "admin-credential");

    /// <summary>Reads the admin credential from the state folder: whoever may mint tokens can read it.</summary>
    public string ReadAdminCredential() => File.ReadAllText(AdminCredentialFile).Trim();

    /// <summary>
    /// Mints a bootstrap token for a workload identity through the admin API (POST /tokens, with the admin credential).
    /// The token is single-use (one certificate, for one process) unless <paramref name="reusable"/>.
    /// </summary>
    public async Task<string> MintTokenAsync(string serviceAccount, string @namespace = "default", bool reusable = false, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(AdminAddress, "/tokens"))
        {
            Content = JsonContent.Create(new { @namespace, serviceAccount, ttl = "01:00:00", reusable }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ReadAdminCredential());
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"The control plane refused a token for {@namespace}/{serviceAccount}: {(int)response.StatusCode} {body}");
        }

        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("token").GetString()!;
    }

    /// <summary>Gets the environment that makes a workload join this mesh over the secure port with <paramref name="token"/>.</summary>
    public Dictionary<string, string?> SecureEnvironment(string token) => new()
    {
        ["Mesh__ControlPlane__Address"] = SecureAddress.ToString(),
        ["Mesh__ControlPlane__RootCertificate"] = RootCertificate,
        ["Mesh__Identity__Token"] = token,
    };
}

/// <summary>A started mesh workload process and the address Kestrel listens on.</summary>
public sealed record WorkloadProcess(ChildProcess Process, string Service, string Instance, Uri Address);

/// <summary>Starts the parts of a local mesh as separate processes on 127.0.0.1 with ephemeral ports.</summary>
public static class MeshProcesses
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Starts Mesh.ControlPlane with its config folder and state folder. Ports are ephemeral unless given
    /// (a restart on the same address needs fixed ones).
    /// </summary>
    /// <param name="xdsPort">
    /// The plaintext ADS port (ControlPlane:XdsAddress), 0 for an ephemeral one; null (the default) leaves it off,
    /// as the control plane does, and workloads join over the secure port.
    /// </param>
    public static Task<ControlPlaneProcess> StartControlPlaneAsync(
        string dllPath,
        string configDirectory,
        string stateDirectory,
        int? xdsPort = null,
        int adminPort = 0,
        int securePort = 0,
        IEnumerable<string>? extraArgs = null,
        Action<string, string>? echo = null) =>
        WaitForControlPlaneAsync(
            ChildProcess.StartDotnet("control-plane", dllPath, ControlPlaneArguments(configDirectory, stateDirectory, xdsPort, adminPort, securePort, extraArgs), echo: echo),
            stateDirectory);

    /// <summary>
    /// Starts the control plane as an installed command (the <c>mesh-control-plane</c> .NET tool) on ephemeral ports,
    /// in <paramref name="workingDirectory"/>, with the given environment on top of this process's.
    /// </summary>
    public static Task<ControlPlaneProcess> StartControlPlaneCommandAsync(
        string command,
        string configDirectory,
        string stateDirectory,
        string workingDirectory,
        IReadOnlyDictionary<string, string?>? environment = null,
        Action<string, string>? echo = null) =>
        WaitForControlPlaneAsync(
            ChildProcess.Start("control-plane", command, ControlPlaneArguments(configDirectory, stateDirectory, null, 0, 0, null), environment, workingDirectory, echo),
            stateDirectory);

    private static string[] ControlPlaneArguments(string configDirectory, string stateDirectory, int? xdsPort, int adminPort, int securePort, IEnumerable<string>? extraArgs) =>
    [
        $"--ControlPlane:ConfigDirectory={configDirectory}",
        $"--ControlPlane:StateDirectory={stateDirectory}",
        .. xdsPort is { } port ? [$"--ControlPlane:XdsAddress=http://127.0.0.1:{port}"] : Array.Empty<string>(),
        $"--ControlPlane:AdminAddress=http://127.0.0.1:{adminPort}",
        $"--ControlPlane:SecureAddress=https://127.0.0.1:{securePort}",
        .. extraArgs ?? [],
    ];

    private static async Task<ControlPlaneProcess> WaitForControlPlaneAsync(ChildProcess process, string stateDirectory)
    {
        try
        {
            var ready = await process.WaitForLineAsync(@"Mesh control plane ready: xds=(\S+) admin=(\S+) secure=(\S+)", StartTimeout).ConfigureAwait(false);
            // xds=off: the plaintext port is not configured.
            var xds = ready.Groups[1].Value == "off" ? null : new Uri(ready.Groups[1].Value);
            return new ControlPlaneProcess(process, xds, new Uri(ready.Groups[2].Value), new Uri(ready.Groups[3].Value), stateDirectory);
        }
        catch
        {
            await process.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Starts a sample workload that joins the mesh through the control plane's secure port, with a bootstrap
    /// token for the service account named after its service (mTLS identity spiffe://cluster.local/ns/default/sa/&lt;service&gt;).
    /// </summary>
    public static async Task<WorkloadProcess> StartWorkloadAsync(
        string dllPath,
        string service,
        string instance,
        ControlPlaneProcess controlPlane,
        IReadOnlyDictionary<string, string?>? environment = null,
        Action<string, string>? echo = null)
    {
        ArgumentNullException.ThrowIfNull(controlPlane);
        var mesh = controlPlane.SecureEnvironment(await controlPlane.MintTokenAsync(service).ConfigureAwait(false));
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            mesh[key] = value;
        }

        return await StartWorkloadAsync(dllPath, service, instance, mesh, echo).ConfigureAwait(false);
    }

    /// <summary>Starts a sample workload with the given mesh settings (Mesh__… environment variables).</summary>
    public static async Task<WorkloadProcess> StartWorkloadAsync(
        string dllPath,
        string service,
        string instance,
        IReadOnlyDictionary<string, string?> environment,
        Action<string, string>? echo = null)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var env = new Dictionary<string, string?>
        {
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
            ["Mesh__Service"] = service,
            ["DEMO_INSTANCE"] = instance,
        };
        foreach (var (key, value) in environment)
        {
            env[key] = value;
        }

        var process = ChildProcess.StartDotnet(instance, dllPath, environment: env, echo: echo);
        try
        {
            var address = await process.WaitForListeningAsync(StartTimeout).ConfigureAwait(false);
            return new WorkloadProcess(process, service, instance, address);
        }
        catch
        {
            await process.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
