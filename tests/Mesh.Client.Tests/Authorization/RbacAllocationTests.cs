using Mesh.Client.Authorization;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Http;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

public sealed class RbacAllocationTests
{
    public static TheoryData<string> Modes => ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"];

    /// <summary>
    /// Normalization (each mode), case-insensitive and trailing-slash-insensitive path matching, the method check and
    /// repeated-free headers: nothing allocated per decision.
    /// </summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public void Authorize_TypicalPolicySet_AllocatesNothingPerDecision(string mode)
    {
        Assert.True(InboundPathSettings.TryParseMode(mode, out var normalization));
        var paths = new InboundPathSettings(normalization, RejectEscapedSlashes: normalization != PathNormalizationMode.DecodeAndMergeSlashes);
        var listener = Listener(
        [
            Deny("admin", Rule(to: [Operation(paths: ["/admin*"])])),
            Deny("no-delete", Rule(to: [Operation(methods: ["DELETE"], paths: ["/orders/*"])])),
            Allow("frontend", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"], namespaces: ["default"])], to: [Operation(methods: ["GET", "POST", "DELETE"], paths: ["/api/*", "/orders/*"], hosts: ["orders"])])),
            Allow("probes", Rule(to: [Operation(paths: ["/healthz"], ports: [8080])], when: [Header("x-probe", values: ["*"])])),
        ], paths: paths);
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors), string.Join("; ", errors));
        var headers = new HeaderDictionary { ["x-probe"] = "1" };
        const string peer = "spiffe://cluster.local/ns/default/sa/frontend";

        var allowed = 0;
        var refused = 0;
        void Run(int count)
        {
            for (var i = 0; i < count; i++)
            {
                allowed += policy.Authorize("GET", "/API/../api/Orders/?id=1", "orders:8080", headers, peer, "default").IsAllowed ? 1 : 0;
                allowed += policy.Authorize("GET", "//Admin/./x", "orders", headers, peer, "default").IsAllowed ? 1 : 0;
                allowed += policy.Authorize("DELETE", "/Orders/%31/", "orders", headers, peer, "default").IsAllowed ? 1 : 0;
                allowed += policy.Authorize("GET", "/HEALTHZ/", "orders", headers, null, null).IsAllowed ? 1 : 0;
                refused += policy.Authorize("delete", "/orders/1", "orders", headers, peer, "default").Outcome == AuthorizationOutcome.BadRequest ? 1 : 0;
            }
        }

        Run(10);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(1000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(2 * 1010, allowed);
        Assert.Equal(1010, refused);
    }

    /// <summary>A port without rules still normalizes every path (and refuses <c>%2F</c>), allocating nothing for a plain one.</summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public void Authorize_PortWithoutRules_NormalizesAndAllocatesNothing(string mode)
    {
        Assert.True(InboundPathSettings.TryParseMode(mode, out var normalization));
        var paths = new InboundPathSettings(normalization, RejectEscapedSlashes: true);
        Assert.True(InboundPolicyDecoder.TryDecode(Listener([], paths: paths), out var policy, out var errors), string.Join("; ", errors));
        Assert.False(policy.HasRules);

        var allowed = 0;
        void Run(int count)
        {
            for (var i = 0; i < count; i++)
            {
                allowed += policy.Authorize("GET", "/api/orders/1?id=1", "orders:8080", headers: null, peerSpiffeId: null, peerNamespace: null).IsAllowed ? 1 : 0;
                allowed += policy.Authorize("POST", "//Admin/./x", "orders", headers: null, peerSpiffeId: null, peerNamespace: null).IsAllowed ? 1 : 0;
            }
        }

        Run(10);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(1000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(2 * 1010, allowed);
        var expected = normalization == PathNormalizationMode.DecodeAndMergeSlashes ? AuthorizationOutcome.Allowed : AuthorizationOutcome.BadRequest;
        Assert.Equal(expected, policy.Authorize("GET", "/a%2Fb", "orders", headers: null, peerSpiffeId: null, peerNamespace: null).Outcome);
    }
}
