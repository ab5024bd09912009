using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>
/// Leader election among control-plane replicas on the <c>coordination.k8s.io/v1</c> Lease
/// <c>&lt;SystemNamespace&gt;/mesh-control-plane</c> (KubernetesClient's LeaderElector, client-go's durations). Every replica
/// serves ADS and the CA; only work one replica may do waits for <see cref="IsLeader"/>. As client-go says, this is no
/// fencing: a paused leader may act after its Lease passed, so guarded work must itself be safe to race (create, not update).
/// </summary>
internal sealed partial class ControlPlaneLeaderElection : IHostedService, IDisposable
{
    public const string LeaseName = "mesh-control-plane";

    private readonly LeaderElector _elector;
    private readonly KubernetesOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _leading = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private int _started;
    private int _disposed;
    private volatile bool _isLeader;
    private volatile string? _leader;
    private long _transitions;

    public ControlPlaneLeaderElection(IKubernetes client, ControlPlaneOptions options, TimeProvider time, ILogger<ControlPlaneLeaderElection> logger, IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(meters);
        _options = options.Kubernetes;
        _time = time;
        _logger = logger;
        Namespace = _options.SystemNamespace;
        Identity = NewIdentity(Environment.GetEnvironmentVariable("POD_NAME"));

        // LeaderElectionConfig's own defaults are milliseconds, not client-go's seconds: always set all three.
        _elector = new LeaderElector(new LeaderElectionConfig(new LeaseLock(client, Namespace, LeaseName, Identity))
        {
            LeaseDuration = _options.LeaseDuration,
            RenewDeadline = _options.RenewDeadline,
            RetryPeriod = _options.RetryPeriod,
        });
        _elector.OnStartedLeading += () =>
        {
            _isLeader = true;
            Interlocked.Increment(ref _transitions);
            Log.StartedLeading(_logger, Namespace, LeaseName, Identity);
            _leading.TrySetResult();
        };
        _elector.OnStoppedLeading += () =>
        {
            if (_isLeader)
            {
                _isLeader = false;
                Log.StoppedLeading(_logger, Namespace, LeaseName, Identity);
            }
        };
        _elector.OnNewLeader += holder =>
        {
            _leader = holder;
            Log.NewLeader(_logger, Namespace, LeaseName, holder ?? "(none)");
        };

        var tags = new KeyValuePair<string, object?>[] { new("lease", $"{Namespace}/{LeaseName}") };
        meters.Create(ControlPlaneMetrics.MeterName).CreateObservableGauge(
            "mesh_leader_election_leader",
            () => new Measurement<int>(_isLeader ? 1 : 0, tags),
            description: "1 while this control-plane replica holds the leader-election Lease, else 0.");
    }

    /// <summary>Gets this replica's holder identity: the pod name (<c>POD_NAME</c>, else the host name) and a random suffix, so a restarted pod is a new holder.</summary>
    public string Identity { get; }

    public string Namespace { get; }

    public bool IsLeader => _isLeader;

    /// <summary>Gets the holder this replica last saw on the Lease, or null before it read it.</summary>
    public string? Leader => _isLeader ? Identity : _leader;

    /// <summary>Completes the first time this replica leads.</summary>
    public Task Leading => _leading.Task;

    /// <summary>Gets how often this replica became the leader.</summary>
    public long Transitions => Interlocked.Read(ref _transitions);

    /// <summary>What /debug/leader shows.</summary>
    public object Describe() => new
    {
        lease = $"{Namespace}/{LeaseName}",
        identity = Identity,
        isLeader = IsLeader,
        leader = Leader,
        leaseDuration = _options.LeaseDuration.ToString("c", System.Globalization.CultureInfo.InvariantCulture),
        renewDeadline = _options.RenewDeadline.ToString("c", System.Globalization.CultureInfo.InvariantCulture),
        retryPeriod = _options.RetryPeriod.ToString("c", System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>Starts campaigning (idempotent): called before the host starts when startup needs the leader, else by the host.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            return;
        }

        using (ExecutionContext.SuppressFlow())
        {
            _loop = Task.Run(() => CampaignAsync(_stopping.Token), CancellationToken.None);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Start();
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_loop is { } loop)
        {
            await loop.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    public void Dispose()
    {
        // Registered both as itself and as a hosted service: the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        _stopping.Dispose();
        _elector.Dispose();
    }

    /// <summary>Maps <c>GET /debug/leader</c> on the admin port only.</summary>
    public static void MapDebug(IEndpointRouteBuilder endpoints, Func<int> adminPort) =>
        endpoints.MapGet("/debug/leader", (HttpContext context, ControlPlaneLeaderElection election) =>
            context.Connection.LocalPort == adminPort() ? Results.Json(election.Describe()) : Results.NotFound());

    internal static string NewIdentity(string? podName)
    {
        var name = string.IsNullOrWhiteSpace(podName) ? Environment.MachineName.ToLowerInvariant() : podName.Trim();
        return $"{name}_{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
    }

    private async Task CampaignAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                // Returns when leadership is lost (renewals failed for RenewDeadline): campaign again.
                await _elector.RunUntilLeadershipLostAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpRequestException or k8s.Autorest.HttpOperationException or IOException or TimeoutException or OperationCanceledException)
            {
                // The API server unreachable or refusing: not the leader until a renewal succeeds again.
                _isLeader = false;
                Log.ElectionFailed(_logger, Namespace, LeaseName, ex.Message, ex);
            }

            try
            {
                var jitter = 1 + Random.Shared.NextDouble() * 0.2;
                await Task.Delay(_options.RetryPeriod * jitter, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
