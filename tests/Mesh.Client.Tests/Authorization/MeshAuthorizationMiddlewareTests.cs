using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

public sealed class MeshAuthorizationMiddlewareTests
{
    [Fact]
    public async Task InvokeAsync_DeniedRequest_Returns403WithRbacBody()
    {
        var (context, reached) = await RunAsync([Deny("admin", Rule(to: [Operation(paths: ["/admin*"])]))], "/public/../admin", peer: null);

        Assert.False(reached);
        Assert.Equal(403, context.Response.StatusCode);
        Assert.Equal("RBAC: access denied", Body(context));
    }

    [Fact]
    public async Task InvokeAsync_AllowedRequest_CallsNext()
    {
        var (context, reached) = await RunAsync([Allow("frontend", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"])]))], "/x", "spiffe://cluster.local/ns/default/sa/frontend");

        Assert.True(reached);
        Assert.Equal(200, context.Response.StatusCode);
    }

    [Fact]
    public async Task InvokeAsync_EncodedSlash_Returns400()
    {
        var (context, reached) = await RunAsync([Deny("admin", Rule(to: [Operation(paths: ["/admin*"])]))], "/admin%2F..", peer: null);

        Assert.False(reached);
        Assert.Equal(400, context.Response.StatusCode);
    }

    [Theory]
    [InlineData("/public%2Fadmin")]
    [InlineData("/public%5cadmin")]
    public async Task InvokeAsync_PortWithoutRulesEncodedSlashUnderReject_Returns400(string target)
    {
        // Envoy normalizes the path (REJECT_REQUEST: 400) whatever the RBAC rules; without it the app got %252F.
        var (context, reached) = await RunAsync([], target, peer: null);

        Assert.False(reached);
        Assert.Equal(400, context.Response.StatusCode);
    }

    [Fact]
    public async Task InvokeAsync_PortWithoutRulesPlainPath_CallsNext()
    {
        var (context, reached) = await RunAsync([], "/public/admin", peer: null);

        Assert.True(reached);
        Assert.Equal(200, context.Response.StatusCode);
    }

    [Fact]
    public async Task InvokeAsync_StrictPortPlaintextPeer_Returns403()
    {
        var (context, reached) = await RunAsync([], "/x", peer: null, tls: true, plaintext: false);

        Assert.False(reached);
        Assert.Equal(403, context.Response.StatusCode);
    }

    [Fact]
    public async Task InvokeAsync_PortWithoutInboundListener_CallsNext()
    {
        var (_, reached) = await RunAsync([Allow("allow-nothing")], "/x", peer: null, listenerPort: 9999);

        Assert.True(reached);
    }

    [Fact]
    public void AddMeshAuthorization_CalledTwice_RegistersOnce()
    {
        var services = new ServiceCollection().AddMeshAuthorization().AddMeshAuthorization();
        using var provider = services.BuildServiceProvider();

        Assert.Single(provider.GetServices<IStartupFilter>().OfType<MeshAuthorizationStartupFilter>());
        Assert.Same(provider.GetRequiredService<InboundPolicyStore>(), provider.GetRequiredService<InboundPolicyStore>());
    }

    private static async Task<(DefaultHttpContext Context, bool Reached)> RunAsync(
        ControlPlane.Model.AuthorizationPolicyModel[] policies, string target, string? peer, bool tls = true, bool plaintext = true, uint listenerPort = 8080)
    {
        var store = new InboundPolicyStore();
        Assert.True(InboundPolicyDecoder.TryDecode(Listener(policies, listenerPort, tls, plaintext), out var policy, out _));
        store.Replace([policy]);
        var reached = false;
        var middleware = new MeshAuthorizationMiddleware(_ => { reached = true; return Task.CompletedTask; }, store, NullLogger<MeshAuthorizationMiddleware>.Instance);
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = 8080;
        context.Request.Method = "GET";
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = target;
        context.Response.Body = new MemoryStream();
        if (peer is not null)
        {
            context.Features.Set<IMeshPeerIdentityFeature>(new PeerIdentity(peer));
        }

        await middleware.InvokeAsync(context);
        return (context, reached);
    }

    private static string Body(DefaultHttpContext context)
    {
        context.Response.Body.Position = 0;
        return new StreamReader(context.Response.Body).ReadToEnd();
    }

    private sealed class PeerIdentity(string spiffeId) : IMeshPeerIdentityFeature
    {
        public string? SpiffeId => spiffeId;

        public string? PeerNamespace => spiffeId.Split('/')[4];

        public string? PeerServiceAccount => spiffeId.Split('/')[6];

        public System.Security.Cryptography.X509Certificates.X509Certificate2? Certificate => null;
    }
}
