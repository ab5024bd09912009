using System.Net;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging.Abstractions;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Attacker's path on <c>ExcludeFromServiceMesh()</c>: only the excluded endpoint itself skips authorization, never a mesh
/// endpoint that shares its port number on another address.
/// </summary>
public sealed class ExcludedEndpointAuthorizationTests
{
    [Theory]
    [InlineData(false, false)] // the mesh endpoint 10.0.0.5:8080: DENY-all applies
    [InlineData(true, true)] // the excluded endpoint 127.0.0.1:8080 itself: outside the mesh
    public async Task DenyAll_OnlyTheExcludedEndpointItselfPassesThrough(bool onExcluded, bool expectReached)
    {
        var store = new InboundPolicyStore();
        Assert.True(InboundPolicyDecoder.TryDecode(Listener([Deny("deny-all", Rule())], 8080, true, true), out var policy, out _));
        store.Replace([policy]);
        var excluded = new MeshExcludedListeners();
        var kestrel = new KestrelServerOptions();
        ListenOptions? local = null;
        ListenOptions? mesh = null;
        kestrel.Listen(IPAddress.Loopback, 8080, l => local = l);
        kestrel.Listen(IPAddress.Parse("10.0.0.5"), 8080, l => mesh = l);
        excluded.Add(local!);
        var reached = false;
        var middleware = new MeshAuthorizationMiddleware(_ => { reached = true; return Task.CompletedTask; }, store, NullLogger<MeshAuthorizationMiddleware>.Instance, excluded: excluded);
        var context = new DefaultHttpContext();
        context.Features.Set(new MeshEndpointFeature(onExcluded ? local! : mesh!, excluded));
        context.Connection.LocalIpAddress = onExcluded ? IPAddress.Loopback : IPAddress.Parse("10.0.0.5");
        context.Connection.LocalPort = 8080;
        context.Request.Method = "GET";
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = "/admin";
        context.Response.Body = new MemoryStream();

        await middleware.InvokeAsync(context);

        Assert.Equal(expectReached, reached);
        Assert.Equal(expectReached ? 200 : 403, context.Response.StatusCode);
    }
}
