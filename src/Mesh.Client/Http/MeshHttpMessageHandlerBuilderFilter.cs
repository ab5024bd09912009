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
            // mesh's Debug log and its own span). With no handler of the app's, the resilience loop sends each attempt itself.
            HttpMessageHandler perAttempt = mesh.Routing;
            for (var i = builder.AdditionalHandlers.Count - 1; i >= 0; i--)
            {
                builder.AdditionalHandlers[i].InnerHandler = perAttempt;
                perAttempt = builder.AdditionalHandlers[i];
            }

            builder.AdditionalHandlers.Clear();
            mesh.Resilience.InnerHandler = perAttempt;
            mesh.Features.InnerHandler = mesh.Resilience;
            builder.PrimaryHandler = mesh.Features;
        };
    }
}
