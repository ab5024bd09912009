using Mesh.Client.Grpc;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Http;

/// <summary>
/// Puts every IHttpClientFactory client into the mesh after its own configuration ran, with the handlers of
/// <see cref="MeshOutboundHandlerFactory"/>: the client's primary handler becomes the fallback of <see cref="MeshHttpHandler"/>
/// (hosts outside the mesh), the route features and <see cref="MeshResilienceHandler"/> go above it so each retry
/// routes (and picks an endpoint) again, and the client's own handlers run per attempt in between.
/// </summary>
internal sealed class MeshHttpMessageHandlerBuilderFilter(
    MeshOutboundHandlerFactory handlers,
    MeshRouter router,
    MeshHostNames names,
    IOptionsMonitor<MeshHttpClientOptions> clientOptions) : IHttpMessageHandlerBuilderFilter
{
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

    // Microsoft.Extensions.Http's handler for loggers added with AddLogger; matched by name, as the type is internal.
    private static bool IsFactoryLogger(DelegatingHandler handler) =>
        handler.GetType().FullName == "Microsoft.Extensions.Http.Logging.HttpClientLoggerHandler";

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
            if (clientOptions.Get(builder.Name ?? Options.DefaultName).Disabled)
            {
                return;
            }

            var name = builder.Name ?? Options.DefaultName;
            var xds = GrpcClientFactorySupport.DisableChannelBalancingForMeshAddress(builder.Services, name, builder.PrimaryHandler, router, names);
            var appPipeline = IndexOfAppResilienceHandler(builder.AdditionalHandlers);

            // An xds:/// client's calls never leave the mesh; the client's own primary handler stays unused.
            var mesh = handlers.Create(xds ? handlers.CreateMeshOnlyHandler() : builder.PrimaryHandler, appOwnsRetries: appPipeline >= 0);
            if (appPipeline >= 0)
            {
                // The app's pipeline retries and hedges: its attempts go through the factory's handlers like any factory
                // client's (its inner logging handler logs each one), and each is routed. Right outside the app's
                // pipeline: each of its attempts (retries, hedged clones) carries one group.
                builder.PrimaryHandler = mesh.Routing;
                builder.AdditionalHandlers.Insert(appPipeline, new MeshAttemptGroupHandler());
                builder.AdditionalHandlers.Insert(0, mesh.Resilience);
                builder.AdditionalHandlers.Insert(0, mesh.Features);
                return;
            }

            // The mesh retries: its chain becomes the client's primary handler, with the client's own handlers (if any)
            // between its resilience and routing handlers, so they run per attempt. The factory's logging handlers, added
            // around the primary handler, log each call once, as an app behind a sidecar sees it (each attempt is in the
            // mesh's Debug log and its own span), and so do loggers added with AddLogger. With no handler of the app's, the
            // resilience loop sends each attempt itself.
            HttpMessageHandler perAttempt = mesh.Routing;
            for (var i = builder.AdditionalHandlers.Count - 1; i >= 0; i--)
            {
                var handler = builder.AdditionalHandlers[i];
                if (IsFactoryLogger(handler))
                {
                    // Loggers added with AddLogger stay around the mesh's chain, like the factory's default logging.
                    continue;
                }

                if (handler.InnerHandler is not null)
                {
                    // What HttpMessageHandlerBuilder says of a handler reused across builds.
                    throw new InvalidOperationException(
                        $"The 'InnerHandler' property of handler '{handler.GetType()}' of HttpClient '{name}' must be null: a DelegatingHandler "
                        + "added with AddHttpMessageHandler must be a new instance each time the factory builds the client's handlers.");
                }

                handler.InnerHandler = perAttempt;
                perAttempt = handler;
                builder.AdditionalHandlers.RemoveAt(i);
            }

            mesh.Resilience.InnerHandler = perAttempt;
            mesh.Features.InnerHandler = mesh.Resilience;
            builder.PrimaryHandler = mesh.Features;
        };
    }
}
