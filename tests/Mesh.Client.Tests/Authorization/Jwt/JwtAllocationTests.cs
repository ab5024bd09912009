using Mesh.Client.Authorization;
using Microsoft.AspNetCore.Http;
using static Mesh.Client.Tests.Authorization.IstioPolicies;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization.Jwt;

public sealed class JwtAllocationTests
{
    [Fact]
    public async Task AuthenticateAndAuthorize_TokenSeenAgain_AllocatesNothing()
    {
        var listener = Listener(
            [Allow("alice", Rule(from: [Source() with { RequestPrincipals = [Issuer + "/alice"] }]))],
            Config(RequestAuthentication("ra", JwtRule())));
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors), string.Join("; ", errors));
        var now = DateTimeOffset.UtcNow;
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/api/x";
        context.Request.Headers.Authorization = "Bearer " + Token(now: now);
        Assert.True((await policy.Jwt!.AuthenticateAsync(context.Request, now)).IsAllowed);

        var allowed = 0;
        void Run(int count)
        {
            for (var i = 0; i < count; i++)
            {
                var pending = policy.Jwt.AuthenticateAsync(context.Request, now);
                var outcome = pending.IsCompletedSuccessfully ? pending.Result : default;
                allowed += outcome.IsAllowed && policy.Authorize("GET", "/api/x", "orders", context.Request.Headers, null, null, outcome.Principal).IsAllowed ? 1 : 0;
            }
        }

        Run(10);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(1000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(1010, allowed);
    }
}
