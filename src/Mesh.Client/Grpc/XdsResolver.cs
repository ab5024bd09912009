using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client.Balancer;
using Grpc.Net.Client.Configuration;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Grpc;

/// <summary>
/// Publishes the endpoints of one mesh service to a gRPC channel and publishes again on every snapshot change.
/// The endpoints are those of the clusters of the service's first route (gRPC balances per call among them).
/// The channel always balances with round_robin, whatever the cluster's policy: Grpc.Net.Client has no
/// least-request balancer, and the HTTP path (<c>http://service</c> through IHttpClientFactory) honours LEAST_REQUEST.
/// </summary>
internal sealed class XdsResolver : Resolver
{
    private static readonly ServiceConfig RoundRobin = new() { LoadBalancingConfigs = { new RoundRobinConfig() } };

    private readonly IMeshSnapshotSource _source;
    private readonly MeshHostNames _names;
    private readonly TimeProvider _time;
    private readonly string _host;
    private readonly int _port;
    private readonly Lock _lock = new();
    private Action<ResolverResult>? _listener;
    private IDisposable? _registration;
    private bool _disposed;

    public XdsResolver(Uri address, IMeshSnapshotSource source, MeshHostNames names, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(address);
        _source = source;
        _names = names;
        _time = time;
        (_host, _port) = ParseTarget(address);
    }

    public override void Start(Action<ResolverResult> listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        lock (_lock)
        {
            if (_listener is not null)
            {
                throw new InvalidOperationException("The resolver has already been started.");
            }

            _listener = listener;
        }

        _registration = ChangeToken.OnChange(_source.GetChangeToken, Publish);
        if (_source.OnDemand is { Enabled: true } onDemand && _host.Length > 0 && !TryFindService(_source.Current, _names, _host, _port, out _))
        {
            // On demand (gRPC's proxyless model): the target is subscribed, and the channel's first calls wait for the
            // answer rather than failing on a resolution the subscription is about to change.
            _ = onDemand.WaitAsync(_host, _port, CancellationToken.None).ContinueWith(
                static (_, state) => ((XdsResolver)state!).Publish(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return;
        }

        Publish();
    }

    public override void Refresh() => Publish();

    /// <summary>Builds the result for the current snapshot.</summary>
    internal ResolverResult Resolve(MeshSnapshot snapshot)
    {
        if (_host.Length == 0)
        {
            return ResolverResult.ForFailure(new Status(StatusCode.InvalidArgument, "An xds:/// address must name a mesh service, e.g. xds:///inventory."));
        }

        if (!snapshot.IsSynced)
        {
            return ResolverResult.ForFailure(new Status(
                StatusCode.Unavailable,
                $"Cannot resolve '{_host}': the service mesh is not yet synced with the control plane. Check that the control plane is running and Mesh:ControlPlane:Address is right."));
        }

        if (!TryFindService(snapshot, _names, _host, _port, out var service))
        {
            return ResolverResult.ForFailure(new Status(
                StatusCode.Unavailable,
                $"Mesh service '{_host}'{(_port > 0 ? $" port {_port}" : string.Empty)} is unknown to the control plane. Check its ServiceEntry or the control plane's /debug/config_dump."));
        }

        var now = _time.GetTimestamp();
        var available = new List<BalancerAddress>();
        var all = new List<BalancerAddress>();
        if (service.Routes.Length > 0)
        {
            foreach (var weighted in service.Routes[0].Clusters)
            {
                foreach (var endpoint in weighted.Cluster.Endpoints)
                {
                    var address = new BalancerAddress(endpoint.Address, endpoint.Port);
                    all.Add(address);
                    if (endpoint.IsAvailable(now))
                    {
                        available.Add(address);
                    }
                }
            }
        }

        if (all.Count == 0)
        {
            return ResolverResult.ForFailure(new Status(
                StatusCode.Unavailable,
                $"Mesh service '{_host}' has no healthy endpoint. Start an instance of it or check its registrations in the control plane's /debug/config_dump."));
        }

        // Panic mode as in the HTTP path: when every endpoint is marked down, try them all rather than none.
        return ResolverResult.ForResult(available.Count > 0 ? available : all, RoundRobin, serviceConfigStatus: null);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_lock)
            {
                _disposed = true;
            }

            _registration?.Dispose();
        }

        base.Dispose(disposing);
    }

    private void Publish()
    {
        Action<ResolverResult>? listener;
        lock (_lock)
        {
            listener = _disposed ? null : _listener;
        }

        listener?.Invoke(Resolve(_source.Current));
    }

    /// <summary>Finds the service an <c>xds:///</c> target names: short, namespaced or full name; port 0 means the default port.</summary>
    internal static bool TryFindService(MeshSnapshot snapshot, MeshHostNames names, string host, int port, [NotNullWhen(true)] out MeshService? service)
    {
        var explicitPort = port > 0;
        return snapshot.TryGetService(host, port, !explicitPort, out service)
            || snapshot.TryGetService(names.Qualify(host), port, !explicitPort, out service);
    }

    /// <summary>Splits an <c>xds:///service[:port]</c> address into the service name and port (0 when absent).</summary>
    internal static (string Host, int Port) ParseTarget(Uri address)
    {
        // xds:///inventory → path "/inventory"; xds://authority/inventory is accepted too, the authority ignored.
        var target = address.IsAbsoluteUri ? address.AbsolutePath.TrimStart('/') : address.OriginalString;
        var colon = target.LastIndexOf(':');
        if (colon > 0 && int.TryParse(target.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535)
        {
            return (target[..colon], port);
        }

        return (target, 0);
    }
}
