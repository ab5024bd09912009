using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Mesh.Samples.Processes;

/// <summary>A started <c>mesh-sidecar</c> and the addresses of its three listeners (as it printed them).</summary>
/// <param name="Inbound">The mesh port (mTLS, AuthorizationPolicy), registered as the workload's <c>http</c> port; null when the sidecar does not register (it then opens none).</param>
/// <param name="Outbound">The app's outbound proxy on 127.0.0.1 (<c>HTTP_PROXY</c>).</param>
/// <param name="Admin">Plain HTTP, outside the mesh: <c>/healthz/ready</c>, <c>/stats/prometheus</c>.</param>
public sealed record SidecarProcess(ChildProcess Process, Uri? Inbound, Uri Outbound, Uri Admin)
{
    public int InboundPort => (Inbound ?? throw new InvalidOperationException($"{Process.Name} opened no inbound port: it does not register.")).Port;

    public int OutboundPort => Outbound.Port;

    public int AdminPort => Admin.Port;
}

/// <summary>
/// An app that is not .NET, in the mesh through its sidecar. <see cref="Workload"/> is what the mesh sees: the
/// sidecar's process, serving the service's mesh port; <see cref="App"/> is the app behind it on
/// <see cref="AppAddress"/> (127.0.0.1, reachable from this machine only).
/// </summary>
public sealed record SidecarWorkload(WorkloadProcess Workload, ChildProcess App, Uri AppAddress, SidecarProcess Sidecar) : IAsyncDisposable
{
    /// <summary>Stops the sidecar first (it deregisters and drains), then the app.</summary>
    public async ValueTask DisposeAsync()
    {
        await Sidecar.Process.DisposeAsync().ConfigureAwait(false);
        await App.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>Starts <c>mesh-sidecar</c> processes and the non-.NET apps behind them (the Python sample).</summary>
public static class SidecarProcesses
{
    /// <summary>The Python sample's readiness path, the sidecar's <c>Sidecar:AppReadyPath</c>.</summary>
    public const string PythonReadyPath = "/healthz";

    /// <summary>
    /// Starts <c>dotnet mesh-sidecar.dll</c> for an app on 127.0.0.1:<paramref name="appPort"/>, with every port
    /// ephemeral and on 127.0.0.1 unless <paramref name="environment"/> says otherwise, and waits for the three
    /// "Sidecar … listening on" lines of its run contract. <paramref name="args"/> are the sidecar's flags.
    /// </summary>
    public static async Task<SidecarProcess> StartSidecarAsync(
        string sidecarDll,
        string name,
        int appPort,
        IReadOnlyDictionary<string, string?> environment,
        Action<string, string>? echo = null,
        IEnumerable<string>? args = null)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var env = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["Sidecar__AppPort"] = appPort.ToString(CultureInfo.InvariantCulture),
            ["Sidecar__InboundPort"] = "0",
            ["Sidecar__InboundAddress"] = "127.0.0.1",
            ["Sidecar__OutboundPort"] = "0",
            ["Sidecar__AdminPort"] = "0",
            ["Sidecar__AdminAddress"] = "127.0.0.1",
            // The sidecar is configured by its own keys; an inherited ASPNETCORE_URLS must not add a listener.
            ["ASPNETCORE_URLS"] = null,
        };
        foreach (var (key, value) in environment)
        {
            env[key] = value;
        }

        var process = ChildProcess.StartDotnet(name, sidecarDll, args, env, echo: echo);
        try
        {
            // A sidecar that does not register opens no inbound port in secure mode (it says so instead).
            var inboundLine = await process.WaitForLineAsync(@"Sidecar inbound (?:listening on (?:[a-z]+://)?([^\s/]+)|not opened)", MeshProcesses.StartTimeout).ConfigureAwait(false);
            Uri? inbound = inboundLine.Groups[1].Success ? new Uri($"http://{inboundLine.Groups[1].Value}/") : null;
            var outbound = await ListenerAsync(process, "outbound").ConfigureAwait(false);
            var admin = await ListenerAsync(process, "admin").ConfigureAwait(false);
            return new SidecarProcess(process, inbound, outbound, admin);
        }
        catch
        {
            await process.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Starts the Python sample (<paramref name="script"/>, e.g. ratings.py) behind its sidecar as an instance of
    /// <paramref name="service"/>: the sidecar joins the mesh with a bootstrap token for the service account named
    /// after the service, then the app starts on a free loopback port with the sidecar's outbound proxy.
    /// </summary>
    public static async Task<SidecarWorkload> StartPythonWorkloadAsync(
        string sidecarDll,
        string script,
        string service,
        string instance,
        ControlPlaneProcess controlPlane,
        IReadOnlyDictionary<string, string?>? sidecarEnvironment = null,
        Action<string, string>? echo = null)
    {
        ArgumentNullException.ThrowIfNull(controlPlane);
        var python = PythonRuntime.Find();
        if (!File.Exists(script))
        {
            throw new FileNotFoundException($"{instance}: the Python sample {script} does not exist.", script);
        }

        var env = controlPlane.SecureEnvironment(await controlPlane.MintTokenAsync(service).ConfigureAwait(false));
        env["Mesh__Service"] = service;
        env["Sidecar__AppReadyPath"] = PythonReadyPath;
        foreach (var (key, value) in sidecarEnvironment ?? new Dictionary<string, string?>())
        {
            env[key] = value;
        }

        // The sidecar needs the app's port and the app its sidecar's proxy: the app's port is picked first, as a
        // deployment fixes it; the sidecar waits for the app to answer before it says it is ready.
        var appPort = FreeLoopbackPort();
        var sidecar = await StartSidecarAsync(sidecarDll, $"{instance}-sidecar", appPort, env, echo).ConfigureAwait(false);
        ChildProcess? app = null;
        try
        {
            app = ChildProcess.Start(
                instance,
                python,
                ["-u", script, "--port", appPort.ToString(CultureInfo.InvariantCulture), "--outbound-proxy", sidecar.Outbound.GetLeftPart(UriPartial.Authority)],
                new Dictionary<string, string?> { ["DEMO_INSTANCE"] = instance, ["PYTHONDONTWRITEBYTECODE"] = "1" },
                Path.GetDirectoryName(Path.GetFullPath(script)),
                echo);
            await app.WaitForLineAsync($@"listening on http://127\.0\.0\.1:{appPort}\b", MeshProcesses.StartTimeout).ConfigureAwait(false);
            return new SidecarWorkload(
                new WorkloadProcess(sidecar.Process, service, instance, sidecar.Inbound ?? throw new InvalidOperationException($"{instance}'s sidecar opened no inbound port")),
                app,
                new Uri($"http://127.0.0.1:{appPort.ToString(CultureInfo.InvariantCulture)}/"),
                sidecar);
        }
        catch
        {
            await sidecar.Process.DisposeAsync().ConfigureAwait(false);
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    private static async Task<Uri> ListenerAsync(ChildProcess process, string listener)
    {
        // The contract prints a URL; the authority is what callers need (the scheme says nothing about mTLS here).
        var match = await process.WaitForLineAsync($@"Sidecar {listener} listening on (?:[a-z]+://)?([^\s/]+)", MeshProcesses.StartTimeout).ConfigureAwait(false);
        return new Uri($"http://{match.Groups[1].Value}/");
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>Finds the machine's Python 3 (3.9 or later) for the Python sample.</summary>
public static class PythonRuntime
{
    public const string InstallHint = "install it: Debian/Ubuntu `apt-get install -y python3`, Fedora `dnf install python3`, macOS `brew install python3`";

    private static readonly Lazy<string> Interpreter = new(Locate);

    /// <summary>
    /// Gets the interpreter's own path (<c>sys.executable</c>), so the process started is Python itself and a signal
    /// reaches it (a version manager's <c>python3</c> shim would otherwise stand between).
    /// </summary>
    /// <exception cref="InvalidOperationException">python3 is missing or older than 3.9; the message says how to install it.</exception>
    public static string Find() => Interpreter.Value;

    private static string Locate()
    {
        var info = new ProcessStartInfo("python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])");
        try
        {
            using var process = Process.Start(info)!;
            var output = process.StandardOutput.ReadToEnd();
            var error = process.StandardError.ReadToEnd();
            if (!process.WaitForExit(30_000) || process.ExitCode != 0)
            {
                throw new InvalidOperationException($"python3 did not run ({error.Trim()}); the Python sample needs Python 3.9 or later: {InstallHint}.");
            }

            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var version = Version.Parse(lines[1]);
            return version >= new Version(3, 9)
                ? lines[0]
                : throw new InvalidOperationException($"python3 is {version}; the Python sample needs Python 3.9 or later: {InstallHint}.");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"python3 was not found on PATH ({e.Message}); the Python sample needs Python 3.9 or later: {InstallHint}.", e);
        }
    }
}
