namespace Mesh.Client.Http;

/// <summary>Per-client mesh settings, as named options keyed by the IHttpClientFactory client name.</summary>
internal sealed class MeshHttpClientOptions
{
    /// <summary>Gets or sets whether the client bypasses the mesh (no routing, no mesh resilience).</summary>
    public bool Disabled { get; set; }
}
