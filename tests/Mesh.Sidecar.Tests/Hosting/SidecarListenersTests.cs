using Mesh.Client;
using Mesh.Sidecar.Hosting;

namespace Mesh.Sidecar.Tests.Hosting;

public sealed class SidecarListenersTests
{
    /// <summary>
    /// The sidecar opens its inbound ports only where an inbound policy will arrive for them: over a plaintext control plane
    /// (no policy either way), or a service that registers or names the address the control plane knows it by (a Pod IP
    /// from its EndpointSlice). An outbound-only sidecar opens none, rather than a port no AuthorizationPolicy covers.
    /// </summary>
    [Theory]
    [InlineData("http://127.0.0.1:15010", null, false, null, true)]
    [InlineData("https://127.0.0.1:15012", "ratings", true, null, true)]
    [InlineData("https://127.0.0.1:15012", "ratings", false, "10.1.2.3", true)]
    [InlineData("https://127.0.0.1:15012", "ratings", false, null, false)]
    [InlineData("https://127.0.0.1:15012", "ratings", false, "", false)]
    [InlineData("https://127.0.0.1:15012", null, true, null, false)]
    [InlineData("https://127.0.0.1:15012", null, false, "10.1.2.3", false)]
    public void OpensInbound_SecureOnlyWhereAPolicyWillArrive(string controlPlane, string? service, bool registers, string? address, bool opens)
    {
        var options = new ServiceMeshOptions { Service = service };
        options.ControlPlane.Address = new Uri(controlPlane);
        options.Registration.Enabled = registers;
        options.Registration.Address = address;

        Assert.Equal(opens, SidecarListeners.OpensInbound(options));
    }
}
