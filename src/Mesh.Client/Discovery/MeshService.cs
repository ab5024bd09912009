using System.Collections.Immutable;
using Mesh.Client.Resilience;

namespace Mesh.Client.Discovery;

/// <summary>
/// A logical destination: one LDS listener (<c>fqdn:port</c>) with the routes of its RDS virtual host.
/// </summary>
internal sealed class MeshService
{
    public MeshService(string listenerName, string host, int port, ImmutableArray<MeshRoute> routes)
    {
        ArgumentException.ThrowIfNullOrEmpty(listenerName);
        ArgumentException.ThrowIfNullOrEmpty(host);
        ListenerName = listenerName;
        Host = host;
        Port = port;
        Routes = routes.IsDefault ? [] : routes;
        var uniform = true;
        foreach (var route in Routes)
        {
            NeedsPath |= !route.MatchesAnyPath;
            NeedsHeaders |= route.Headers.Length > 0;
            NeedsQuery |= route.QueryParameters.Length > 0;
            HasRouteResilience |= route.Resilience is not null;
            HasRouteFeatures |= route.Features is not null;
            uniform &= RouteResilience.SameAs(route.Resilience, Routes[0].Resilience);
        }

        ResilienceIsUniform = uniform;
        UniformResilience = uniform && Routes.Length > 0 ? Routes[0].Resilience : null;
    }

    public string ListenerName { get; }

    /// <summary>Gets the fully qualified service host, e.g. <c>orders.default.svc.cluster.local</c>.</summary>
    public string Host { get; }

    public int Port { get; }

    public ImmutableArray<MeshRoute> Routes { get; }

    /// <summary>Gets whether any route looks at the path; when none does the path is never computed.</summary>
    public bool NeedsPath { get; }

    public bool NeedsHeaders { get; }

    /// <summary>Gets whether any route looks at the query string; when none does the query is never read.</summary>
    public bool NeedsQuery { get; }

    /// <summary>Gets whether any route sets a timeout or retry policy; when none does the resilience handler matches no route.</summary>
    public bool HasRouteResilience { get; }

    /// <summary>
    /// Gets whether every route sets the same timeout and retry policy (or none does), as when each route carries
    /// istiod's default retry policy: then the resilience handler reads <see cref="UniformResilience"/> and matches no route.
    /// </summary>
    public bool ResilienceIsUniform { get; }

    /// <summary>Gets the timeout and retry policy every route sets, when <see cref="ResilienceIsUniform"/>; null when none sets one.</summary>
    public RouteResilience? UniformResilience { get; }

    /// <summary>Gets whether any route has a fault, mirror, rewrite, header mutation, redirect or direct response.</summary>
    public bool HasRouteFeatures { get; }

    /// <summary>Gets the on-demand subscription this service came from (its last call is recorded there); null in wildcard mode.</summary>
    public ServiceUsage? Usage { get; init; }

    /// <summary>
    /// Gets or sets the circuit breaker of <see cref="Host"/> as <see cref="MeshResiliencePolicies.GetBreaker"/> last
    /// handed it out: a cache on the snapshot's object (the policies' table, which outlives snapshots, is the truth), so
    /// a request finds its breaker without hashing the host.
    /// </summary>
    internal CircuitBreaker? CachedBreaker { get; set; }

    public override string ToString() => ListenerName;
}
