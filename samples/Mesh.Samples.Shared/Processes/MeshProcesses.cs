namespace Mesh.Samples.Processes;

/// <summary>A started control plane process and the addresses it printed in its ready line.</summary>
public sealed record ControlPlaneProcess(ChildProcess Process, Uri XdsAddress, Uri AdminAddress, Uri SecureAddress);

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
    public static async Task<ControlPlaneProcess> StartControlPlaneAsync(
        string dllPath,
        string configDirectory,
        string stateDirectory,
        int xdsPort = 0,
        int adminPort = 0,
        int securePort = 0,
        IEnumerable<string>? extraArgs = null,
        Action<string, string>? echo = null)
    {
        string[] args =
        [
            $"--ControlPlane:ConfigDirectory={configDirectory}",
            $"--ControlPlane:StateDirectory={stateDirectory}",
            $"--ControlPlane:XdsAddress=http://127.0.0.1:{xdsPort}",
            $"--ControlPlane:AdminAddress=http://127.0.0.1:{adminPort}",
            $"--ControlPlane:SecureAddress=https://127.0.0.1:{securePort}",
            .. extraArgs ?? [],
        ];
        var process = ChildProcess.StartDotnet("control-plane", dllPath, args, echo: echo);
        try
        {
            var ready = await process.WaitForLineAsync(@"Mesh control plane ready: xds=(\S+) admin=(\S+) secure=(\S+)", StartTimeout).ConfigureAwait(false);
            return new ControlPlaneProcess(process, new Uri(ready.Groups[1].Value), new Uri(ready.Groups[2].Value), new Uri(ready.Groups[3].Value));
        }
        catch
        {
            await process.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Starts a sample workload that joins the mesh through <paramref name="controlPlane"/>.</summary>
    public static async Task<WorkloadProcess> StartWorkloadAsync(
        string dllPath,
        string service,
        string instance,
        Uri controlPlane,
        IReadOnlyDictionary<string, string?>? environment = null,
        Action<string, string>? echo = null)
    {
        ArgumentNullException.ThrowIfNull(controlPlane);
        var env = new Dictionary<string, string?>
        {
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
            ["Mesh__ControlPlane__Address"] = controlPlane.ToString(),
            ["Mesh__Service"] = service,
            ["DEMO_INSTANCE"] = instance,
        };
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
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
