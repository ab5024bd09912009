using Mesh.Client.Authorization.Jwt;

namespace Mesh.Client.Tests.Authorization.Jwt;

public sealed class JwtStatusTextTests
{
    [Fact]
    public void TracePolicy_EveryStatus_NamedAndBuiltOnce()
    {
        foreach (var status in Enum.GetValues<JwtStatus>())
        {
            var policy = JwtStatusText.TracePolicy(status);
            Assert.Equal($"RequestAuthentication: {status}", policy);

            // The same instance each time: a denial tags its span without building a string.
            Assert.Same(policy, JwtStatusText.TracePolicy(status));
        }
    }
}
