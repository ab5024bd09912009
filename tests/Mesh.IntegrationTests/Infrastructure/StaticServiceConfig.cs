namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>
/// The config most traffic tests start from, written to the mesh's config folder: a STATIC ServiceEntry on port 80 over
/// the given endpoints, a DestinationRule with the given traffic policy, and optionally a VirtualService retrying
/// <c>5xx,connect-failure</c>; then waits until the control plane serves every endpoint.
/// </summary>
internal static class StaticServiceConfig
{
    /// <param name="mesh">The mesh whose config folder gets <c>&lt;name&gt;.yaml</c>.</param>
    /// <param name="name">The service's host and the resources' name.</param>
    /// <param name="endpoints">Each endpoint as a YAML flow map, e.g. <c>{address: 127.0.0.1, ports: {http: 8080}}</c>.</param>
    /// <param name="trafficPolicy">The DestinationRule's <c>trafficPolicy</c> body (block YAML, any indentation).</param>
    /// <param name="retryAttempts">The VirtualService's retry attempts; null: no VirtualService.</param>
    public static async Task WriteAsync(LocalMesh mesh, string name, IReadOnlyCollection<string> endpoints, string trafficPolicy, int? retryAttempts = null)
    {
        var endpointLines = string.Join('\n', endpoints.Select(e => "    - " + e));
        var policy = string.Join('\n', trafficPolicy.Trim().Split('\n').Select(line => "    " + line));
        var yaml = $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: {{name}}}
            spec:
              hosts: [{{name}}]
              ports: [{number: 80, name: http, protocol: HTTP}]
              resolution: STATIC
              endpoints:
            {{endpointLines}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: {{name}}}
            spec:
              host: {{name}}
              trafficPolicy:
            {{policy}}
            """;
        if (retryAttempts is { } attempts)
        {
            yaml += $$"""

                ---
                apiVersion: networking.istio.io/v1
                kind: VirtualService
                metadata: {name: {{name}}}
                spec:
                  hosts: [{{name}}]
                  http:
                  - route:
                    - destination: {host: {{name}}}
                    retries: {attempts: {{attempts}}, retryOn: "5xx,connect-failure"}
                """;
        }

        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, name + ".yaml"), yaml);
        await mesh.WaitForEndpointsAsync(name, endpoints.Count);
    }
}
