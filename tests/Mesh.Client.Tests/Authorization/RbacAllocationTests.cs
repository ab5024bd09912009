using Mesh.Client.Authorization;
using Microsoft.AspNetCore.Http;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

public sealed class RbacAllocationTests
{
    [Fact]
    public void Authorize_TypicalPolicySet_AllocatesNothingPerDecision()
    {
        var listener = Listener(
        [
            Deny("admin", Rule(to: [Operation(paths: ["/admin*"])])),
            Allow("frontend", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"], namespaces: ["default"])], to: [Operation(methods: ["GET", "POST"], paths: ["/api/*"], hosts: ["orders"])])),
            Allow("probes", Rule(to: [Operation(paths: ["/healthz"], ports: [8080])], when: [Header("x-probe", values: ["*"])])),
        ]);
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out _));
        var headers = new HeaderDictionary { ["x-probe"] = "1" };
        const string peer = "spiffe://cluster.local/ns/default/sa/frontend";

        var allowed = 0;
        void Run(int count)
        {
            for (var i = 0; i < count; i++)
            {
                allowed += policy.Authorize("GET", "/api/../api/orders?id=1", "orders:8080", headers, peer, "default").IsAllowed ? 1 : 0;
                allowed += policy.Authorize("GET", "//admin/./x", "orders", headers, peer, "default").IsAllowed ? 1 : 0;
                allowed += policy.Authorize("GET", "/healthz", "orders", headers, null, null).IsAllowed ? 1 : 0;
            }
        }

        Run(10);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(1000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(2 * 1010, allowed);
    }
}
