using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Tests.Security;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// The backend the telemetry tests watch an allowed and a refused call on: orders over STRICT mTLS, in secure mode (an
/// https:// control plane is what gives the workload its SPIFFE ID), with one DENY policy, <c>no-delete</c>, refusing
/// every DELETE.
/// </summary>
internal static class OrdersBackend
{
    public static async Task<MeshBackend> StartDenyingDeleteAsync(TestCa ca, Action<IServiceCollection>? services = null, Action<ServiceMeshOptions>? options = null)
    {
        var backend = await MeshBackend.StartAsync(
            "orders-0",
            ca.Store(ca.Issue([TestCa.Id("orders")])),
            PeerAuthenticationMode.Strict,
            HttpProtocols.Http1,
            collection =>
            {
                collection.AddMeshAuthorization();
                services?.Invoke(collection);
                collection.Configure<ServiceMeshOptions>(mesh =>
                {
                    mesh.Service = "orders";
                    mesh.ControlPlane.Address = new Uri("https://127.0.0.1:15012");
                    options?.Invoke(mesh);
                });
            });
        Assert.True(InboundPolicyDecoder.TryDecode(
            Listener([Deny("no-delete", Rule(to: [Operation(methods: ["DELETE"])]))], (uint)backend.Port, plaintext: false),
            out var policy,
            out var errors), string.Join("; ", errors));
        backend.Services.GetRequiredService<InboundPolicyStore>().Replace([policy]);
        return backend;
    }
}
