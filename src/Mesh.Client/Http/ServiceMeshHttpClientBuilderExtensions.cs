using Mesh.Client.Http;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Per-client service mesh settings for IHttpClientFactory clients.</summary>
public static class ServiceMeshHttpClientBuilderExtensions
{
    /// <summary>
    /// Keeps this client out of the service mesh: its requests are neither routed to mesh endpoints nor wrapped in
    /// the mesh's retries, timeouts and circuit breakers.
    /// </summary>
    public static IHttpClientBuilder WithoutServiceMesh(this IHttpClientBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure<MeshHttpClientOptions>(builder.Name, static options => options.Disabled = true);
        return builder;
    }
}
