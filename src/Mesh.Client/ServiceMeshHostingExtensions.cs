using Mesh.Client;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.Extensions.Hosting;

/// <summary>Adds the proxyless service mesh to an application.</summary>
public static class ServiceMeshHostingExtensions
{
    /// <summary>
    /// Adds the service mesh: options from the <c>Mesh</c> configuration section (validated at startup),
    /// the xDS client, the <c>mesh</c> readiness health check (tag <c>ready</c>), self-registration and the
    /// mesh request path for IHttpClientFactory and gRPC clients. Calling it more than once registers once.
    /// The same as <c>builder.Services.AddServiceMesh()</c>.
    /// </summary>
    /// <typeparam name="TBuilder">The application builder's type.</typeparam>
    /// <param name="builder">The application builder.</param>
    /// <returns>The application builder, for chaining.</returns>
    public static TBuilder AddServiceMesh<TBuilder>(this TBuilder builder)
        where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddServiceMesh();
        return builder;
    }

    /// <summary>Adds the service mesh, then applies <paramref name="configure"/> after configuration binding.</summary>
    /// <typeparam name="TBuilder">The application builder's type.</typeparam>
    /// <param name="builder">The application builder.</param>
    /// <param name="configure">Sets options in code; runs after the <c>Mesh</c> section was bound, before validation.</param>
    /// <returns>The application builder, for chaining.</returns>
    public static TBuilder AddServiceMesh<TBuilder>(this TBuilder builder, Action<ServiceMeshOptions> configure)
        where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        builder.Services.AddServiceMesh(configure);
        return builder;
    }
}
