using Mesh.Sidecar.Hosting;
using Microsoft.AspNetCore.Http;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>RFC 9110 §7.6.1: headers named in the caller's Connection header do not leave the sidecar.</summary>
public sealed class ConnectionHeaderTests
{
    [Fact]
    public void RemoveNominatedHeaders_EveryNamedHeaderInAnySpelling_IsRemoved()
    {
        var incoming = new HeaderDictionary { ["Connection"] = new(["keep-alive, X-Secret ,x-tenant", "Content-Language, not a name, Accept-Ranges"]) };
        using var outgoing = new HttpRequestMessage(HttpMethod.Post, "http://orders/x") { Content = new StringContent("body") };
        outgoing.Headers.TryAddWithoutValidation("X-Secret", "s");
        outgoing.Headers.TryAddWithoutValidation("X-Tenant", "t");
        outgoing.Headers.TryAddWithoutValidation("Keep-Alive", "timeout=5");
        outgoing.Headers.TryAddWithoutValidation("X-Kept", "k");
        outgoing.Content.Headers.TryAddWithoutValidation("Content-Language", "de");

        ConnectionHeader.RemoveNominatedHeaders(incoming, outgoing);

        Assert.False(outgoing.Headers.Contains("X-Secret"));
        Assert.False(outgoing.Headers.Contains("X-Tenant"));
        Assert.False(outgoing.Headers.Contains("Keep-Alive"));
        Assert.False(outgoing.Content.Headers.Contains("Content-Language"));
        Assert.Equal(["k"], outgoing.Headers.GetValues("X-Kept"));
    }

    [Fact]
    public void RemoveNominatedHeaders_NoConnectionOrUpgrade_LeavesHeaders()
    {
        using var outgoing = new HttpRequestMessage(HttpMethod.Get, "http://orders/x");
        outgoing.Headers.TryAddWithoutValidation("X-Secret", "s");
        outgoing.Headers.TryAddWithoutValidation("Upgrade", "websocket");

        ConnectionHeader.RemoveNominatedHeaders(new HeaderDictionary(), outgoing);
        ConnectionHeader.RemoveNominatedHeaders(new HeaderDictionary { ["Connection"] = "Upgrade, , " }, outgoing);

        Assert.True(outgoing.Headers.Contains("X-Secret"));
        Assert.True(outgoing.Headers.Contains("Upgrade"));
    }
}
