using System.Net;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.Client.Xds;
using Mesh.Xds.Registry.V1;
using Mesh.Xds.Retry;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Registration;

/// <summary>
/// Registers this app's Kestrel addresses as a WorkloadEntry of <c>Mesh:Service</c> once the app has
/// started, renews the lease at a third of its TTL, re-registers when the control plane lost it, and
/// deregisters when the app begins to stop (before Kestrel stops, so that callers drain away first).
/// </summary>
/// <remarks>
/// With several replicas listed (<c>Mesh:ControlPlane:Addresses</c>) it keeps a lease with each: replicas outside
/// Kubernetes do not share registrations, and a client that fails over must find this instance on the replica it lands on.
/// One address that reaches several replicas (a Service) needs nothing more: a renewal that lands on a replica that never
/// saw the lease gets NOT_FOUND and registers again there.
/// </remarks>
internal sealed partial class WorkloadRegistrationService : IHostedLifecycleService, IDisposable
{
    private static readonly TimeSpan DeregisterTimeout = TimeSpan.FromSeconds(2);

    private readonly ServiceMeshOptions _options;
    private readonly IServiceProvider _services;
    private readonly ControlPlaneChannel _channel;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly Func<double> _random;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;
    private readonly string?[] _leases;
    private int _disposed;

    public WorkloadRegistrationService(
        IOptions<ServiceMeshOptions> options,
        IServiceProvider services,
        ControlPlaneChannel channel,
        IHostApplicationLifetime lifetime,
        TimeProvider timeProvider,
        ILogger<WorkloadRegistrationService> logger)
        : this(options, services, channel, lifetime, timeProvider, logger, random: null)
    {
    }

    // Not on the container's constructor: an app's own registered Func<double> must never become the lease-renewal jitter.
    internal WorkloadRegistrationService(
        IOptions<ServiceMeshOptions> options,
        IServiceProvider services,
        ControlPlaneChannel channel,
        IHostApplicationLifetime lifetime,
        TimeProvider timeProvider,
        ILogger<WorkloadRegistrationService> logger,
        Func<double>? random)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _services = services;
        _channel = channel;
        _lifetime = lifetime;
        _timeProvider = timeProvider;
        _logger = logger;
        _random = random ?? Random.Shared.NextDouble;
        _leases = new string?[channel?.Addresses.Count ?? 1];
    }

    // Whether the workload's address is 127.0.0.1 standing in for a wildcard binding (no Mesh:Registration:Address).
    private bool _addressStandsIn;

    /// <summary>Gets the lease id with the first replica that holds one, or null when not registered.</summary>
    public string? LeaseId => Enumerable.Range(0, _leases.Length).Select(i => Volatile.Read(ref _leases[i])).FirstOrDefault(l => l is not null);

    /// <summary>Gets the lease id with each replica (null where not registered), in the order of <see cref="ControlPlaneChannel.Addresses"/>.</summary>
    internal IReadOnlyList<string?> Leases => [.. Enumerable.Range(0, _leases.Length).Select(i => Volatile.Read(ref _leases[i]))];

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(_options.Service) || !(_options.Registration.Enabled || _services.GetService<Authorization.InboundPolicyStore>()?.IsMeshServed == true))
        {
            return Task.CompletedTask;
        }

        // Secure mode: the workload asks for the inbound policy of its address:ports, which the control plane sends once it
        // knows them (registered, or from a Kubernetes EndpointSlice when the workload does not register); until then (or
        // after the control plane removes it) its ports answer 503. InboundPolicyStore.ServesMeshTraffic decides that from
        // the options when the store is created, before any hosted service (Kestrel included) starts.
        _lifetime.ApplicationStarted.Register(() =>
        {
            using (ExecutionContext.SuppressFlow())
            {
                _loop = Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);
            }
        });
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Runs before any hosted service (Kestrel included) stops: leave the mesh while still serving.</summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        // Callers learn by EDS that this instance left (deregistered, or its Pod terminating in its EndpointSlice); until
        // then their requests are served under the last policy, even if the control plane withdraws it first.
        if (_loop is not null)
        {
            _services.GetService<Authorization.InboundPolicyStore>()?.BeginLeaving();
        }

        if (LeaseId is null)
        {
            return;
        }

        await Task.WhenAll(Enumerable.Range(0, _leases.Length).Select(i => DeregisterAsync(i, cancellationToken))).ConfigureAwait(false);
    }

    private async Task DeregisterAsync(int replica, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _leases[replica]) is not { } leaseId)
        {
            return;
        }

        try
        {
            var client = new WorkloadRegistry.WorkloadRegistryClient(_channel.ChannelFor(_channel.Addresses[replica]));
            await client.DeregisterAsync(
                new DeregisterRequest { LeaseId = leaseId },
                deadline: DateTime.UtcNow + DeregisterTimeout, // gRPC deadlines are wall-clock
                cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
            Volatile.Write(ref _leases[replica], null);
            Log.Deregistered(_logger, _options.Service!, leaseId);
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or HttpRequestException or IOException)
        {
            Log.DeregisterFailed(_logger, leaseId, ex);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        // Registered both as itself and as a hosted service: the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stopping.Dispose();
        }
    }

    /// <summary>
    /// Builds the WorkloadEntry from Kestrel's actual addresses, less those excluded from the mesh, each port under the name
    /// its host gave it (<see cref="MeshPortNames"/>) or else <c>http</c>, <c>http-2</c>…; null when the app has no server.
    /// </summary>
    internal WorkloadEntry? BuildWorkload()
    {
        var server = _services.GetService<IServer>();
        var addresses = server?.Features.Get<IServerAddressesFeature>()?.Addresses;
        if (addresses is null || addresses.Count == 0)
        {
            return null;
        }

        // In secure mode the registry accepts only the identity the certificate carries, so register as that identity
        // (the control plane certified the token's namespace and service account, whatever the options say).
        var certified = _services.GetService<Security.IWorkloadCertificateSource>() is { IsSecure: true, Current: { } current }
            ? current.Id
            : null;
        var workload = new WorkloadEntry
        {
            Namespace = certified?.Namespace ?? _options.Namespace,
            ServiceAccount = certified?.ServiceAccount ?? _options.ServiceAccount ?? _options.Service!,
            Locality = _options.Locality ?? string.Empty,
        };
        workload.Labels.Add(XdsNode.WorkloadLabels(_options));
        var excluded = _services.GetService<Security.MeshExcludedListeners>();
        var names = _services.GetService<MeshPortNames>();
        var index = 0;
        var unnamed = 0;
        foreach (var raw in addresses)
        {
            // Kestrel reports wildcard bindings as http://[::]:5000 or http://+:5000; "+"/"*" are not valid URI hosts.
            var text = raw.Replace("://+:", "://0.0.0.0:", StringComparison.Ordinal).Replace("://*:", "://0.0.0.0:", StringComparison.Ordinal);
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Port <= 0)
            {
                continue;
            }

            var bound = Hosting.KestrelEndpoints.AddressOf(uri);
            if (bound is not null && excluded?.IsExcluded(bound, uri.Port) == true)
            {
                continue;
            }

            if (index == 0)
            {
                workload.Address = AdvertisedAddress(uri.Host);
            }

            if (bound is not null && names?.NameOf(bound, uri.Port) is { } name)
            {
                workload.Ports[name] = (uint)uri.Port;
            }
            else
            {
                workload.Ports[unnamed == 0 ? "http" : $"http-{unnamed + 1}"] = (uint)uri.Port;
                unnamed++;
            }

            index++;
        }

        return index == 0 ? null : workload;
    }

    private string AdvertisedAddress(string host)
    {
        if (_options.Registration.Address is { Length: > 0 } configured)
        {
            return configured;
        }

        var trimmed = host.Trim('[', ']');
        var isWildcard = trimmed is "0.0.0.0" or "::" or "localhost" || (IPAddress.TryParse(trimmed, out var ip) && (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any)));
        _addressStandsIn = isWildcard && trimmed != "localhost";
        return isWildcard ? "127.0.0.1" : trimmed;
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            // Secure mode: the registry checks the SVID against the WorkloadEntry, so registration waits for it.
            await _channel.WaitForIdentityAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        var workload = BuildWorkload();
        if (workload is null)
        {
            Log.NoServer(_logger, _options.Service!);
            return;
        }

        var inbound = workload.Ports.Values.Select(port => Mesh.Xds.Wire.XdsWire.InboundAuthority(workload.Address, port)).ToList();
        _services.GetService<Xds.XdsClient>()?.SubscribeInbound(inbound);
        if (!_options.Registration.Enabled)
        {
            // Known to the control plane by its address alone (a Pod in its Service's EndpointSlices): say which, and warn
            // when that address is only the loopback stand-in for a wildcard binding, which no EndpointSlice lists.
            if (_addressStandsIn)
            {
                Log.InboundAddressGuessed(_logger, _options.Service!, string.Join(", ", inbound));
            }
            else
            {
                Log.InboundWithoutRegistration(_logger, _options.Service!, string.Join(", ", inbound));
            }

            return;
        }

        if (_services.GetService<IWorkloadRegistrationGate>() is not { } gate)
        {
            await KeepLeasesAsync(workload, cancellationToken).ConfigureAwait(false);
            return;
        }

        // An endpoint only while the host says it can serve (a sidecar's app answering), as Kubernetes keeps a Pod in its
        // Service's endpoints only while it is ready: before, and whenever readiness fails, callers would get 503s here
        // where another endpoint would answer them.
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await gate.WaitUntilReadyAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var leases = KeepLeasesAsync(workload, ready.Token);
            var notReady = gate.WaitUntilNotReadyAsync(ready.Token);
            await Task.WhenAny(leases, notReady).ConfigureAwait(false);
            await ready.CancelAsync().ConfigureAwait(false);
            await leases.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await notReady.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (cancellationToken.IsCancellationRequested)
            {
                // Stopping: StoppingAsync leaves the mesh (keeping the inbound policy for the drain).
                return;
            }

            Log.LeavingNotReady(_logger, _options.Service!);
            await Task.WhenAll(Enumerable.Range(0, _leases.Length).Select(i => DeregisterAsync(i, cancellationToken))).ConfigureAwait(false);
        }
    }

    private Task KeepLeasesAsync(WorkloadEntry workload, CancellationToken cancellationToken) =>
        Task.WhenAll(Enumerable.Range(0, _leases.Length).Select(i => KeepLeaseAsync(i, workload, cancellationToken)));

    private async Task KeepLeaseAsync(int replica, WorkloadEntry workload, CancellationToken cancellationToken)
    {
        var address = _channel.Addresses[replica];
        var client = new WorkloadRegistry.WorkloadRegistryClient(_channel.ChannelFor(address));
        var requested = Duration.FromTimeSpan(_options.Registration.LeaseTtl);
        var ttl = _options.Registration.LeaseTtl;
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan delay;
            try
            {
                if (Volatile.Read(ref _leases[replica]) is not { } leaseId)
                {
                    var registered = await client.RegisterAsync(
                        new RegisterRequest { Workload = workload, LeaseTtl = requested },
                        deadline: CallDeadline(ttl),
                        cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
                    Volatile.Write(ref _leases[replica], registered.LeaseId);
                    ttl = Granted(registered.LeaseTtl, ttl);
                    Log.Registered(_logger, _options.Service!, address, workload.Address, string.Join(", ", workload.Ports.Select(p => $"{p.Key}={p.Value}")), registered.LeaseId, ttl);
                }
                else
                {
                    var renewed = await client.RenewAsync(new RenewRequest { LeaseId = leaseId }, deadline: CallDeadline(ttl), cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
                    ttl = Granted(renewed.LeaseTtl, ttl);
                }

                failures = 0;
                delay = ttl / 3;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound && Volatile.Read(ref _leases[replica]) is { } lost)
            {
                Log.LeaseLost(_logger, lost);
                Volatile.Write(ref _leases[replica], null);
                continue;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.PermissionDenied)
            {
                // Not transient: the control plane's configuration says this identity may not serve this service. It may
                // change (a ServiceEntry edit), so keep trying, but at the slowest pace and loudly.
                Volatile.Write(ref _leases[replica], null);
                delay = _options.ControlPlane.MaxReconnectDelay;
                Log.RegistrationRefused(_logger, _options.Service!, workload.ServiceAccount, ex.StatusCode, ex.Status.Detail, delay);
            }
            catch (Exception ex) when (ex is RpcException or HttpRequestException or IOException)
            {
                // Keep the lease: a control plane that restarts keeps its leases, so renewing it when it is back keeps this
                // one WorkloadEntry; if the lease expired meanwhile, the renewal's NOT_FOUND registers afresh.
                failures++;
                delay = Backoff.Reconnect(_options.ControlPlane.InitialReconnectDelay, _options.ControlPlane.MaxReconnectDelay, failures, _random());
                Log.RegistrationFailed(_logger, _options.Service!, address, delay, ex);
            }

            try
            {
                await Task.Delay(delay, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    // A call that hangs (a connection dying mid-call, a control plane restarting) must not outlive the lease it keeps:
    // each call gets a third of the lease, between 2 and 10 seconds, and a timed-out call is retried like any failure.
    // gRPC compares deadlines with the wall clock (not the TimeProvider), so they are made from it.
    private static DateTime CallDeadline(TimeSpan ttl) =>
        DateTime.UtcNow + TimeSpan.FromTicks(Math.Clamp(ttl.Ticks / 3, TimeSpan.TicksPerSecond * 2, TimeSpan.TicksPerSecond * 10));

    private static TimeSpan Granted(Duration? granted, TimeSpan fallback) =>
        granted is not null && granted.ToTimeSpan() > TimeSpan.Zero ? granted.ToTimeSpan() : fallback;
}
