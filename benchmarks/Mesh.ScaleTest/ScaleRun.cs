using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.LoadTest;
using Mesh.Samples.Processes;

namespace Mesh.ScaleTest;

/// <summary>What one change did: the latency to each subscriber that got it, who did not, and the bytes it moved.</summary>
internal sealed record ChangeResult(int Service, int Subscribers, List<double> LatenciesMs, long Bytes, int ResourceBytes);

/// <summary>Everything measured for one size.</summary>
internal sealed record ScaleResult(ScaleSize Size, ClientMode Mode, int Subscribe)
{
    public int Connections { get; init; }

    public List<double> SyncSeconds { get; init; } = [];

    public int NotSynced { get; init; }

    public TimeSpan SyncWall { get; init; }

    public List<ChangeResult> Changes { get; init; } = [];

    public long RssSynced { get; init; }

    public long RssPeakSync { get; init; }

    public long RssPeakChanges { get; init; }

    public TimeSpan CpuSync { get; init; }

    public TimeSpan CpuChanges { get; init; }

    public List<double>? ResyncSeconds { get; init; }

    public int NotResynced { get; init; }

    public TimeSpan KillToReady { get; init; }

    public long RssPeakRestart { get; init; }

    public int StarvationWarnings { get; init; }

    public int ListenersServed { get; init; }

    public string? FirstClientError { get; init; }
}

/// <summary>
/// One size: generated config → a real control plane (the Release build this project references, plaintext ADS port on
/// 127.0.0.1) → C simulated clients in this process → cold sync, K endpoint changes one after the other, and optionally a
/// kill and restart of the control plane. Every wait is bounded; the control plane is stopped by its PID.
/// </summary>
internal sealed class ScaleRun(ScaleSettings settings, ScaleSize size, string controlPlaneDll, TextWriter log)
{
    private static readonly TimeSpan SettleQuiet = TimeSpan.FromMilliseconds(500);

    public async Task<ScaleResult> RunAsync(CancellationToken cancellationToken)
    {
        var root = Directory.CreateTempSubdirectory("mesh-scale-").FullName;
        var configDirectory = Path.Combine(root, "config");
        var stateDirectory = Path.Combine(root, "state");
        var generator = new MeshConfigGenerator(configDirectory, size.Services, size.Endpoints, settings.Routing);
        await generator.WriteAllAsync(cancellationToken).ConfigureAwait(false);

        ControlPlaneProcess controlPlane;
        try
        {
            controlPlane = await StartControlPlaneAsync(configDirectory, stateDirectory, xdsPort: 0, adminPort: 0, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Directory.Delete(root, recursive: true);
            throw;
        }

        var xds = controlPlane.RequirePlaintextXds();
        using var clientsStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var probe = new ScaleProbe(size.Clients);
        var channels = new List<GrpcChannel>();
        var tasks = new List<Task>();
        try
        {
            var cp = new ProcessProbe("control plane", controlPlane.Process.Id);
            using var sampler = new PeakSampler(() => new ProcessProbe("control plane", controlPlane.Process.Id).RssBytes());
            var cpuStart = cp.CpuTime();

            // One GrpcChannel (one HTTP/2 connection) per K streams: Kestrel allows 100 concurrent streams per connection.
            for (var i = 0; i < size.Clients; i += settings.StreamsPerConnection)
            {
                channels.Add(GrpcChannel.ForAddress(xds, new GrpcChannelOptions
                {
                    HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true, ConnectTimeout = TimeSpan.FromSeconds(10) },
                    MaxReceiveMessageSize = null,
                }));
            }

            var clients = Enumerable.Range(0, size.Clients).Select(CreateClient).ToArray();
            log.WriteLine($"  {size.Clients} {ScaleSettings.ModeName(settings.Mode)} clients over {channels.Count} connections to {xds} (control plane pid {controlPlane.Process.Id})");

            // Cold start: every client at once, as after a deployment of the whole fleet.
            var syncStarted = Stopwatch.StartNew();
            foreach (var client in clients)
            {
                var invoker = channels[client.Index / settings.StreamsPerConnection].CreateCallInvoker();
                tasks.Add(Task.Run(() => client.RunAsync(invoker, clientsStop.Token), CancellationToken.None));
            }

            var synced = probe.Synced.WaitAsync(settings.SyncTimeout, cancellationToken);
            if (await Task.WhenAny(synced, probe.Fatal).ConfigureAwait(false) == probe.Fatal)
            {
                throw new InvalidOperationException(await probe.Fatal.ConfigureAwait(false));
            }

            await synced.ConfigureAwait(false);
            var syncWall = syncStarted.Elapsed;
            var syncSeconds = clients.Where(c => probe.FirstSyncAt(c.Index) != 0)
                .Select(c => Stopwatch.GetElapsedTime(c.FirstOpenedAt, probe.FirstSyncAt(c.Index)).TotalSeconds).ToList();
            var cpuSync = cp.CpuTime() - cpuStart;
            var rssPeakSync = sampler.TakePeak();
            var rssSynced = cp.RssBytes();
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  synced {syncSeconds.Count}/{size.Clients} in {syncWall.TotalSeconds:0.0} s; control plane RSS {Mb(rssSynced)} MB (peak {Mb(rssPeakSync)} MB), CPU {cpuSync.TotalSeconds:0.0} s"));

            // Endpoint changes, one at a time, each given the whole window.
            var changes = new List<ChangeResult>();
            var cpuBeforeChanges = cp.CpuTime();
            for (var k = 0; k < settings.Changes && probe.Synced.Count > 0; k++)
            {
                var change = await RunChangeAsync(k, generator, probe, clients, cancellationToken).ConfigureAwait(false);
                if (change is null)
                {
                    log.WriteLine("  no service has a subscriber: no change measured");
                    break;
                }

                changes.Add(change);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  change {k + 1}: svc-{change.Service:D5}, {change.LatenciesMs.Count}/{change.Subscribers} subscribers reached, max {(change.LatenciesMs.Count == 0 ? 0 : change.LatenciesMs.Max()):0} ms, {change.Bytes:N0} bytes moved (assignment {change.ResourceBytes} bytes)"));
            }

            var cpuChanges = cp.CpuTime() - cpuBeforeChanges;
            var rssPeakChanges = sampler.TakePeak();

            List<double>? resync = null;
            var killToReady = TimeSpan.Zero;
            long rssPeakRestart = 0;
            if (settings.Restart)
            {
                (controlPlane, resync, killToReady) = await RestartAsync(controlPlane, configDirectory, stateDirectory, probe, clients, cancellationToken).ConfigureAwait(false);
                rssPeakRestart = sampler.TakePeak();
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  restart: killed, ready again after {killToReady.TotalSeconds:0.0} s; {resync.Count}/{size.Clients} resynced, the last {(resync.Count == 0 ? 0 : resync.Max()):0.0} s after the kill"));
            }

            return new ScaleResult(size, settings.Mode, settings.Subscribe)
            {
                Connections = channels.Count,
                SyncSeconds = syncSeconds,
                NotSynced = size.Clients - syncSeconds.Count,
                SyncWall = syncWall,
                Changes = changes,
                RssSynced = rssSynced,
                RssPeakSync = rssPeakSync,
                RssPeakChanges = rssPeakChanges,
                CpuSync = cpuSync,
                CpuChanges = cpuChanges,
                ResyncSeconds = resync,
                NotResynced = resync is null ? 0 : size.Clients - resync.Count,
                KillToReady = killToReady,
                RssPeakRestart = rssPeakRestart,
                StarvationWarnings = CountStarvation(controlPlane.Process.Output),
                ListenersServed = probe.Catalog.Count(XdsTypes.Listener),
                FirstClientError = clients.Where(c => probe.FirstSyncAt(c.Index) == 0).Select(c => c.LastError).FirstOrDefault(e => e is not null),
            };
        }
        finally
        {
            await clientsStop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAny(Task.WhenAll(tasks), Task.Delay(TimeSpan.FromSeconds(30), CancellationToken.None)).ConfigureAwait(false);
            foreach (var channel in channels)
            {
                channel.Dispose();
            }

            await controlPlane.Process.StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            await controlPlane.Process.DisposeAsync().ConfigureAwait(false);
            Directory.Delete(root, recursive: true);
        }

        SimulatedClient CreateClient(int index)
        {
            var listeners = settings.IsOnDemand ? PickServices(index).Select(MeshConfigGenerator.ListenerName).ToArray() : [];
            return settings.IsDelta
                ? new DeltaClient(index, settings.IsOnDemand, listeners, probe)
                : new SotwClient(index, settings.IsOnDemand, listeners, probe);
        }
    }

    /// <summary>The services an on-demand client calls: S distinct ones, drawn with the client's index as seed.</summary>
    private IEnumerable<int> PickServices(int client)
    {
        var random = new Random(client);
        var picked = new HashSet<int>();
        while (picked.Count < Math.Min(settings.Subscribe, size.Services))
        {
            picked.Add(random.Next(size.Services));
        }

        return picked;
    }

    private async Task<ChangeResult?> RunChangeAsync(int k, MeshConfigGenerator generator, ScaleProbe probe, SimulatedClient[] clients, CancellationToken cancellationToken)
    {
        // Spread over the services; on demand, the next service someone subscribes to.
        for (var attempt = 0; attempt < size.Services; attempt++)
        {
            var service = (int)((((long)k * size.Services / Math.Max(1, settings.Changes)) + attempt) % size.Services);
            var assignment = probe.Catalog.AssignmentWith(generator.FirstEndpoint(service));
            if (assignment is null)
            {
                continue;
            }

            var subscribers = clients.Select(c => c.SubscribesTo(XdsTypes.ClusterLoadAssignment, assignment)).ToArray();
            if (!subscribers.Contains(true))
            {
                continue;
            }

            var bytesBefore = clients.Sum(c => c.Bytes);
            var address = MeshConfigGenerator.ChangedAddress(k);
            var change = new EndpointChange(service, assignment, address, Stopwatch.GetTimestamp(), subscribers);
            probe.Change = change;
            await generator.ChangeEndpointAsync(service, address, cancellationToken).ConfigureAwait(false);
            var window = Stopwatch.StartNew();
            await change.Reached.WaitAsync(settings.Window, cancellationToken).ConfigureAwait(false);

            // Everything the change caused, not only the assignment: wait until no response has arrived for a while.
            var last = clients.Sum(c => c.Bytes);
            var quietSince = Stopwatch.StartNew();
            while (quietSince.Elapsed < SettleQuiet && window.Elapsed < settings.Window + SettleQuiet)
            {
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
                var now = clients.Sum(c => c.Bytes);
                if (now != last)
                {
                    last = now;
                    quietSince.Restart();
                }
            }

            probe.Change = null;
            return new ChangeResult(service, change.Reached.Target, change.LatenciesMs(), last - bytesBefore, change.ResourceBytes);
        }

        return null;
    }

    private async Task<(ControlPlaneProcess ControlPlane, List<double> Resync, TimeSpan KillToReady)> RestartAsync(
        ControlPlaneProcess controlPlane, string configDirectory, string stateDirectory, ScaleProbe probe, SimulatedClient[] clients, CancellationToken cancellationToken)
    {
        // Same ports (the clients reconnect to the address they know), same state folder (same CA), same config.
        var xdsPort = controlPlane.RequirePlaintextXds().Port;
        var adminPort = controlPlane.AdminAddress.Port;
        var killedAt = Stopwatch.GetTimestamp();
        var resynced = probe.WatchResync(killedAt);
        await controlPlane.Process.KillAsync().ConfigureAwait(false);
        await controlPlane.Process.DisposeAsync().ConfigureAwait(false);
        var restarted = await StartControlPlaneAsync(configDirectory, stateDirectory, xdsPort, adminPort, cancellationToken).ConfigureAwait(false);
        var readyAt = Stopwatch.GetTimestamp();
        await resynced.WaitAsync(settings.Window, cancellationToken).ConfigureAwait(false);

        // From the kill: the new process accepts streams before it prints its ready line, so "ready" is no fixed start.
        var resync = clients.Where(c => probe.ResyncAt(c.Index) != 0)
            .Select(c => Stopwatch.GetElapsedTime(killedAt, probe.ResyncAt(c.Index)).TotalSeconds).ToList();
        return (restarted, resync, Stopwatch.GetElapsedTime(killedAt, readyAt));
    }

    private async Task<ControlPlaneProcess> StartControlPlaneAsync(string configDirectory, string stateDirectory, int xdsPort, int adminPort, CancellationToken cancellationToken)
    {
        // Warnings only (as in production): a console line per connecting client would be measured as control-plane work.
        var controlPlane = await MeshProcesses.StartControlPlaneAsync(controlPlaneDll, configDirectory, stateDirectory, xdsPort: xdsPort, adminPort: adminPort,
            extraArgs: ["--Logging:LogLevel:Default=Warning"]).ConfigureAwait(false);

        // Ready means a valid snapshot of the generated config: a config error would be reported here, not as a sync timeout.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using var response = await http.GetAsync(new Uri(controlPlane.AdminAddress, "/healthz/ready"), cancellationToken).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                return controlPlane;
            }

            if (deadline.Elapsed > MeshProcesses.StartTimeout)
            {
                var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                await controlPlane.Process.DisposeAsync().ConfigureAwait(false);
                throw new TimeoutException($"The control plane did not become ready on the generated config within {MeshProcesses.StartTimeout.TotalSeconds:0} s: {body}\n{controlPlane.Process.Output}");
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    private static int CountStarvation(string output) =>
        output.Split('\n').Count(l => l.Contains("starvation", StringComparison.OrdinalIgnoreCase));

    private static long Mb(long bytes) => bytes / (1024 * 1024);

    /// <summary>Samples a process's RSS every 100 ms and keeps the peak since the last <see cref="TakePeak"/>.</summary>
    private sealed class PeakSampler : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Func<long> _read;
        private long _peak;

        public PeakSampler(Func<long> read)
        {
            _read = read;
            _ = Task.Run(SampleAsync);
        }

        public long TakePeak()
        {
            Sample();
            return Interlocked.Exchange(ref _peak, 0);
        }

        public void Dispose()
        {
            _stop.Cancel();
            _stop.Dispose();
        }

        private async Task SampleAsync()
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    Sample();
                    await Task.Delay(100, _stop.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
        }

        private void Sample()
        {
            var rss = _read();
            long peak;
            while (rss > (peak = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, rss, peak) != peak)
            {
            }
        }
    }
}
