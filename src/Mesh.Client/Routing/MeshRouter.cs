using Mesh.Client.Discovery;

namespace Mesh.Client.Routing;

internal enum RouteStatus
{
    /// <summary>The host is not a mesh service: the request goes out untouched (normal DNS).</summary>
    NotMeshHost,

    /// <summary>The host looks like a mesh name but no snapshot has arrived yet.</summary>
    NotSynced,

    Routed,

    /// <summary>The service exists but none of its routes matches the request.</summary>
    NoRoute,

    /// <summary>The chosen cluster has no endpoint at all.</summary>
    NoEndpoint,

    /// <summary>The route answers the request itself (redirect, direct response): <see cref="Http.MeshRouteFeaturesHandler"/> does.</summary>
    LocalResponse,
}

/// <summary>The per-request path: host → service → route → weighted cluster → endpoint. Allocates nothing.</summary>
internal sealed class MeshRouter
{
    private readonly IMeshSnapshotSource _source;
    private readonly MeshHostNames _names;
    private readonly Func<int, int> _random;
    private readonly Xds.OnDemandSubscriptions? _onDemand;

    public MeshRouter(IMeshSnapshotSource source, MeshHostNames names)
        : this(source, names, random: null)
    {
    }

    // Not on the container's constructor: an app's own registered Func<int, int> must never become the endpoint picker.
    internal MeshRouter(IMeshSnapshotSource source, MeshHostNames names, Func<int, int>? random)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(names);
        _source = source;
        _names = names;
        _random = random ?? Random.Shared.Next;
        _onDemand = source.OnDemand is { Enabled: true } onDemand ? onDemand : null;
    }

    public MeshSnapshot Snapshot => _source.Current;

    /// <summary>Gets the on-demand subscriptions when the client runs in <c>OnDemand</c> mode, else null.</summary>
    public Xds.OnDemandSubscriptions? OnDemand => _onDemand;

    public RouteStatus Route(
        HttpRequestMessage request,
        long now,
        MeshEndpoint? avoid,
        out MeshService? service,
        out MeshCluster? cluster,
        out MeshEndpoint? endpoint) =>
        Route(request, now, TimeProvider.System.TimestampFrequency, avoid, out service, out cluster, out endpoint);

    /// <summary>Routes with timestamps of a given <see cref="TimeProvider"/> (<paramref name="timestampFrequency"/> ticks per second).</summary>
    public RouteStatus Route(
        HttpRequestMessage request,
        long now,
        long timestampFrequency,
        MeshEndpoint? avoid,
        out MeshService? service,
        out MeshCluster? cluster,
        out MeshEndpoint? endpoint)
    {
        ArgumentNullException.ThrowIfNull(request);
        cluster = null;
        endpoint = null;
        var uri = request.RequestUri;
        if (uri is null || !uri.IsAbsoluteUri)
        {
            service = null;
            return RouteStatus.NotMeshHost;
        }

        var host = uri.IdnHost;
        var snapshot = _source.Current;
        if (!snapshot.TryGetService(host, uri.Port, uri.IsDefaultPort, out service))
        {
            return !snapshot.IsSynced && _names.LooksLikeMeshHost(host) ? RouteStatus.NotSynced : RouteStatus.NotMeshHost;
        }

        return Route(service!, request, uri, now, timestampFrequency, avoid, out cluster, out endpoint);
    }

    /// <summary>
    /// Routes a request to <paramref name="service"/>, which the caller just found in <see cref="Snapshot"/> for the
    /// request's URI (<paramref name="uri"/>): the first attempt of a request its resilience handler already looked up.
    /// </summary>
    public RouteStatus Route(
        MeshService service,
        HttpRequestMessage request,
        Uri uri,
        long now,
        long timestampFrequency,
        MeshEndpoint? avoid,
        out MeshCluster? cluster,
        out MeshEndpoint? endpoint)
    {
        cluster = null;
        endpoint = null;

        // On demand: the call keeps its service subscribed (a field read; a write at most once a second).
        service.Usage?.Touch(now, timestampFrequency);

        var route = MatchRoute(service, request, uri);
        if (route is null)
        {
            return RouteStatus.NoRoute;
        }

        if (route.Clusters.IsEmpty)
        {
            return RouteStatus.LocalResponse;
        }

        cluster = route.PickCluster(_random);
        endpoint = route.HashPolicy is { } hashPolicy && hashPolicy.TryHash(request, uri, out var hash)
            ? cluster.PickEndpoint(now, timestampFrequency, avoid, hash)
            : cluster.PickEndpoint(now, timestampFrequency, avoid);
        return endpoint is null ? RouteStatus.NoEndpoint : RouteStatus.Routed;
    }

    /// <summary>The first route of <paramref name="service"/> that matches the request, as Envoy picks it.</summary>
    internal static MeshRoute? MatchRoute(MeshService service, HttpRequestMessage request, Uri uri)
    {
        // A request whose route rewrote its path or headers stays on that route (Envoy routes once, then rewrites).
        if (service.HasRouteFeatures && Http.MeshRouteFeaturesHandler.PinnedRoute(request, service) is { } pinned)
        {
            return pinned;
        }

        var routes = service.Routes;
        if (!service.NeedsPath && !service.NeedsHeaders && !service.NeedsQuery)
        {
            return routes.Length > 0 ? routes[0] : null;
        }

        // Uri keeps both once computed, so a request routed again (each retry) reads them without allocating.
        var path = service.NeedsPath ? uri.AbsolutePath : string.Empty;
        var query = service.NeedsQuery ? uri.Query : string.Empty;
        // Read once for the whole table: a request without headers (most, before .NET adds its trace headers below the mesh)
        // decides every header matcher without a name lookup.
        var noHeaders = service.NeedsHeaders && HeaderMatch.HasNoHeaders(request);
        foreach (var route in routes)
        {
            if (route.MatchesPath(path) && route.MatchesQuery(query) && route.MatchesHeaders(request, noHeaders))
            {
                return route;
            }
        }

        return null;
    }
}
