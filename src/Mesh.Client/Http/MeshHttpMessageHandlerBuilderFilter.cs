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

    public MeshHttpMessageHandlerBuilderFilter(
        MeshRouter router,
        MeshHostNames names,
        EndpointConnectionPools pools,
        MeshResiliencePolicies policies,
        TimeProvider time,
        IOptionsMonitor<MeshHttpClientOptions> clientOptions,
        IOptions<ServiceMeshOptions> meshOptions,
        ILoggerFactory loggerFactory)
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
            GrpcClientFactorySupport.DisableChannelBalancingForMeshAddress(builder.Services, name, builder.PrimaryHandler, _router, _names);
            builder.PrimaryHandler = new MeshHttpHandler(_router, _pools, _time, _logger, _controlPlane)
            {
                InnerHandler = GrpcClientFactorySupport.SecureXdsChannel(builder.Services, name, builder.PrimaryHandler),
            };
            builder.AdditionalHandlers.Insert(0, new MeshResilienceHandler(_router, _policies, _resilienceLogger));

            // Outermost: faults, rewrites and mirrors happen once per request, before retries (as Envoy's fault filter and router).
            builder.AdditionalHandlers.Insert(0, new MeshRouteFeaturesHandler(_router, _pools, _time, _featuresLogger));
        };
    }
}
