using Mesh.Client.Authorization;
using Mesh.ControlPlane.Model;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// AuthorizationPolicy on an opaque TCP port (the sidecar's inbound tunnels), from Istio's translation through the client
/// decoder: rules with only principals, namespaces and ports decide per connection; an ALLOW rule with HTTP fields is
/// left out (narrower) and a DENY rule loses its HTTP conditions (wider), as istiod builds TCP filter chains.
/// </summary>
public sealed class ConnectionAuthorizationTests
{
    private const string TcpClient = "spiffe://cluster.local/ns/default/sa/tcp-client";
    private const string Admin = "spiffe://cluster.local/ns/default/sa/admin";
    private const string Intruder = "spiffe://cluster.local/ns/default/sa/intruder";
    private const string TestNs = "spiffe://cluster.local/ns/test/sa/x";

    private static readonly Dictionary<string, (AuthorizationPolicyModel[] Policies, string? Peer, bool Allowed)> Table = new()
    {
        ["allow principal: that principal"] = ([Allow("p", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/tcp-client"])]))], TcpClient, true),
        ["allow principal: another identity"] = ([Allow("p", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/tcp-client"])]))], Intruder, false),
        ["allow principal: plaintext"] = ([Allow("p", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/tcp-client"])]))], null, false),
        ["allow namespace: in it"] = ([Allow("n", Rule(from: [Source(namespaces: ["test"])]))], TestNs, true),
        ["allow namespace: outside"] = ([Allow("n", Rule(from: [Source(namespaces: ["test"])]))], TcpClient, false),
        ["allow this port"] = ([Allow("port", Rule(to: [Operation(ports: [9000])]))], Intruder, true),
        ["allow another port"] = ([Allow("port", Rule(to: [Operation(ports: [8080])]))], TcpClient, false),
        ["allow with paths: skipped on TCP"] = ([Allow("paths", Rule(to: [Operation(paths: ["/public"])]))], TcpClient, false),
        ["allow principal and methods: skipped on TCP"] = ([Allow("mixed", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/tcp-client"])], to: [Operation(methods: ["GET"])]))], TcpClient, false),
        ["allow: the rule without HTTP fields still applies"] = ([Allow("two", Rule(to: [Operation(paths: ["/x"])]), Rule(from: [Source(principals: ["cluster.local/ns/default/sa/admin"])]))], Admin, true),
        ["allow header condition: skipped on TCP"] = ([Allow("h", Rule(from: [Source(principals: ["*"])], when: [Header("x-debug", ["1"])]))], TcpClient, false),
        ["deny paths: every connection denied"] = ([Deny("paths", Rule(to: [Operation(paths: ["/admin"])]))], TcpClient, false),
        ["deny notPaths: every connection denied"] = ([Deny("not-paths", Rule(to: [Operation(notPaths: ["/public"])]))], TcpClient, false),
        ["deny namespace with methods: that namespace denied"] = ([Deny("ns", Rule(from: [Source(namespaces: ["test"])], to: [Operation(methods: ["DELETE"])]))], TestNs, false),
        ["deny namespace with methods: others allowed"] = ([Deny("ns", Rule(from: [Source(namespaces: ["test"])], to: [Operation(methods: ["DELETE"])]))], TcpClient, true),
        ["deny principal: that principal"] = ([Deny("p", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/intruder"])]))], Intruder, false),
        ["deny principal: another"] = ([Deny("p", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/intruder"])]))], TcpClient, true),
        ["no policy"] = ([], null, true),
    };

    public static TheoryData<string> Rows => new(Table.Keys);

    [Theory]
    [MemberData(nameof(Rows))]
    public void AuthorizeConnection_AsIstioOnTcp(string row)
    {
        var (policies, peer, allowed) = Table[row];
        Assert.True(InboundPolicyDecoder.TryDecode(Listener(policies, port: 9000), out var policy, out var errors), string.Join("; ", errors));
        var peerNamespace = peer?.Split('/')[4];

        var decision = policy!.AuthorizeConnection(peer, peerNamespace);

        Assert.True(allowed == decision.IsAllowed, $"{row}: expected {(allowed ? "allowed" : "denied")}, got {decision.Outcome} ({decision.Reason})");
    }

    [Fact]
    public void AuthorizeConnection_HttpAllowRuleSkipped_ButTheSamePolicyStillAllowsThatHttpRequest()
    {
        AuthorizationPolicyModel[] policies = [Allow("paths", Rule(to: [Operation(paths: ["/public"])]))];
        Assert.True(InboundPolicyDecoder.TryDecode(Listener(policies, port: 9000), out var policy, out _));

        Assert.True(policy!.Authorize("GET", "/public", "echo", headers: null, TcpClient, "default").IsAllowed);
        Assert.False(policy.AuthorizeConnection(TcpClient, "default").IsAllowed);
    }
}
