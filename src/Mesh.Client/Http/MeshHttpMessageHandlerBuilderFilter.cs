using Mesh.Client.Grpc;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Http;

/// <summary>
/// Puts every IHttpClientFactory client into the mesh after its own configuration ran: the client's primary handler
/// becomes the fallback of <see cref="MeshHttpHandler"/>, and <see cref="MeshResilienceHandler"/> goes outermost so
/// each retry routes (and picks an endpoint) again.
/// </summary>
internal sealed class MeshHttpMessageHandlerBuilderFilter : IHttpMessageHandlerBuilderFilter
{
    private readonly MeshRouter _router;
    private readonly MeshHostNames _names;
    private readonly EndpointConnectionPools _pools;
    private readonly MeshResiliencePolicies _policies;
    private readonly TimeProvider _time;
    private readonly IOptionsMonitor<MeshHttpClientOptions> _clientOptions;
    private readonly ILogger _logger;
    private readonly ILogger _resilienceLogger;
    private readonly ILogger _featuresLogger;
    private readonly string _controlPlane;
    private readonly Telemetry.IstioRequestMetrics? _metrics;
    private readonly Telemetry.MeshAccessLog? _accessLog;

    public MeshHttpMessageHandlerBuilderFilter(
        MeshRouter router,
        MeshHostNames names,
        EndpointConnectionPools pools,
        MeshResiliencePolicies policies,
        TimeProvider time,
        IOptionsMonitor<MeshHttpClientOptions> clientOptions,
        IOptions<ServiceMeshOptions> meshOptions,
        ILoggerFactory loggerFactory,
        Telemetry.IstioRequestMetrics? metrics = null,
        Telemetry.MeshAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(meshOptions);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _router = router;
        _names = names;
        _pools = pools;
        _policies = policies;
        _time = time;
        _clientOptions = clientOptions;
        _logger = loggerFactory.CreateLogger<MeshHttpHandler>();
        _resilienceLogger = loggerFactory.CreateLogger<MeshResilienceHandler>();
        _featuresLogger = loggerFactory.CreateLogger<MeshRouteFeaturesHandler>();
        _controlPlane = meshOptions.Value.ControlPlane.Address?.ToString() ?? "(Mesh:ControlPlane:Address is not set)";
        _metrics = metrics;
        _accessLog = accessLog;
    }

    /// <summary>
    /// Whether <paramref name="handler"/> is a Microsoft.Extensions.Http.Resilience pipeline (<c>AddStandardResilienceHandler</c>,
    /// <c>AddStandardHedgingHandler</c>, <c>AddResilienceHandler</c>). Matched by name: the mesh does not depend on that package.
    /// </summary>
    internal static bool IsAppResilienceHandler(DelegatingHandler handler)
    {
        for (var type = handler.GetType(); type is not null; type = type.BaseType)
        {
            if (type.FullName == "Microsoft.Extensions.Http.Resilience.ResilienceHandler")
            {
                return true;
            }
        }

        return false;
    }

    private static int IndexOfAppResilienceHandler(IList<DelegatingHandler> handlers)
    {
        for (var i = 0; i < handlers.Count; i++)
        {
            if (IsAppResilienceHandler(handlers[i]))
            {
                return i;
            }
        }

        return -1;
    }

    public Action<HttpMessageHandlerBuilder> Configure(Action<HttpMessageHandlerBuilder> next)
    {
        ArgumentNullException.ThrowIfNull(next);
        return builder =>
        {
            next(builder);
            if (_clientOptions.Get(builder.Name ?? Options.DefaultName).Disabled)
            {
                return;
            }

            var name = builder.Name ?? Options.DefaultName;
            var xds = GrpcClientFactorySupport.DisableChannelBalancingForMeshAddress(builder.Services, name, builder.PrimaryHandler, _router, _names);
            var appPipeline = IndexOfAppResilienceHandler(builder.AdditionalHandlers);
            builder.PrimaryHandler = new MeshHttpHandler(_router, _pools, _time, _logger, _controlPlane)
            {
                AccessLog = _accessLog,
                // An xds:/// client's calls never leave the mesh; the client's own primary handler stays unused.
                InnerHandler = xds ? new MeshServiceOnlyHandler(_router, _controlPlane) : builder.PrimaryHandler,
                SpreadsAttempts = appPipeline >= 0,
            };
            if (appPipeline >= 0)
            {
                // Right outside the app's pipeline: each of its attempts (retries, hedged clones) carries one group.
                builder.AdditionalHandlers.Insert(appPipeline, new MeshAttemptGroupHandler());
            }

            builder.AdditionalHandlers.Insert(0, new MeshResilienceHandler(_router, _policies, _resilienceLogger)
            {
                AppOwnsRetries = appPipeline >= 0,
            });

            // Outermost: faults, rewrites and mirrors happen once per request, before retries (as Envoy's fault filter and router),
            // and the request metrics are recorded once per request.
            builder.AdditionalHandlers.Insert(0, new MeshRouteFeaturesHandler(_router, _pools, _time, _featuresLogger, random: null, _metrics, _accessLog));
        };
    }

    /// <summary>
    /// The handler of an <c>xds:///</c> channel: the same route features (faults…), route table, balancers, route retries
    /// and timeout, and per-endpoint mTLS pools as every IHttpClientFactory client, ending in <see cref="MeshServiceOnlyHandler"/>.
    /// </summary>
    public HttpMessageHandler CreateXdsChannelHandler() =>
        new MeshRouteFeaturesHandler(_router, _pools, _time, _featuresLogger, random: null, _metrics, _accessLog)
        {
            InnerHandler = new MeshResilienceHandler(_router, _policies, _resilienceLogger)
            {
                InnerHandler = new MeshHttpHandler(_router, _pools, _time, _logger, _controlPlane)
                {
                    AccessLog = _accessLog,
                    InnerHandler = new MeshServiceOnlyHandler(_router, _controlPlane),
                },
            },
        };
}
