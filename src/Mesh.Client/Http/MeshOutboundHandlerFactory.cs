using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Http;

/// <summary>
/// Builds the mesh's outbound handlers, the one place they are put together: for <see cref="IMeshOutboundHandlerFactory"/>
/// callers and <c>xds:///</c> channels as one chain, and for IHttpClientFactory clients around the app's own handlers
/// (<see cref="MeshHttpMessageHandlerBuilderFilter"/>).
/// </summary>
internal sealed class MeshOutboundHandlerFactory : IMeshOutboundHandlerFactory
{
    private readonly MeshRouter _router;
    private readonly EndpointConnectionPools _pools;
    private readonly MeshResiliencePolicies _policies;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ILogger _resilienceLogger;
    private readonly ILogger _featuresLogger;
    private readonly string _controlPlane;
    private readonly IstioRequestMetrics? _metrics;
    private readonly MeshAccessLog? _accessLog;

    public MeshOutboundHandlerFactory(
        MeshRouter router,
        EndpointConnectionPools pools,
        MeshResiliencePolicies policies,
        TimeProvider time,
        IOptions<ServiceMeshOptions> meshOptions,
        ILoggerFactory loggerFactory,
        IstioRequestMetrics? metrics = null,
        MeshAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(meshOptions);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _router = router;
        _pools = pools;
        _policies = policies;
        _time = time;
        _logger = loggerFactory.CreateLogger<MeshHttpHandler>();
        _resilienceLogger = loggerFactory.CreateLogger<MeshResilienceHandler>();
        _featuresLogger = loggerFactory.CreateLogger<MeshRouteFeaturesHandler>();
        _controlPlane = meshOptions.Value.ControlPlane.EffectiveAddresses is { Count: > 0 } addresses ? string.Join(", ", addresses) : "(Mesh:ControlPlane:Address is not set)";
        _metrics = metrics;
        _accessLog = accessLog;
    }

    public HttpMessageHandler CreateHandler(MeshOutboundHandlerOptions? options = null)
    {
        var handlers = Create(options?.NonMeshHandler ?? CreateMeshOnlyHandler(), appOwnsRetries: false);
        handlers.Resilience.InnerHandler = handlers.Routing;
        handlers.Features.InnerHandler = handlers.Resilience;
        return handlers.Features;
    }

    /// <summary>The end of a chain whose requests must not leave the mesh: fails, naming the host.</summary>
    public HttpMessageHandler CreateMeshOnlyHandler() => new MeshServiceOnlyHandler(_router, _controlPlane);

    /// <summary>
    /// The three mesh handlers, not yet chained (an IHttpClientFactory client puts its own handlers between the resilience
    /// and routing handlers): route features outermost (faults, rewrites and mirrors once per request, before retries, as
    /// Envoy's fault filter and router; request metrics once per request), then the route's resilience (each retry routes
    /// and picks an endpoint again), then the per-attempt routing over <paramref name="inner"/>, which gets every request
    /// for a host that is not a mesh service.
    /// </summary>
    /// <param name="inner">The handler for hosts outside the mesh.</param>
    /// <param name="appOwnsRetries">
    /// Whether the app's own resilience pipeline (Microsoft.Extensions.Http.Resilience) sits between the resilience and
    /// routing handlers: then the mesh does not retry, and each of the app's attempts goes to an endpoint its siblings did not take.
    /// </param>
    public MeshOutboundHandlers Create(HttpMessageHandler inner, bool appOwnsRetries)
    {
        ArgumentNullException.ThrowIfNull(inner);
        return new(
            new MeshRouteFeaturesHandler(_router, _pools, _time, _featuresLogger, random: null, _metrics, _accessLog),
            new MeshResilienceHandler(_router, _policies, _resilienceLogger) { AppOwnsRetries = appOwnsRetries },
            new MeshHttpHandler(_router, _pools, _time, _logger, _controlPlane)
            {
                InnerHandler = inner,
                SpreadsAttempts = appOwnsRetries,
            });
    }
}

/// <summary>The mesh's outbound handlers, outermost first.</summary>
internal readonly record struct MeshOutboundHandlers(MeshRouteFeaturesHandler Features, MeshResilienceHandler Resilience, MeshHttpHandler Routing);
