using System.Text.Json;
using Mesh.Client.Authorization;
using Mesh.Client.Authorization.Jwt;
using Microsoft.IdentityModel.Tokens;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization.Jwt;

/// <summary>
/// The client refuses a pushed JWKS that carries private key material (a control plane that forgot to strip it, or an
/// older one): the listener is NACKed with the field path, and the key never becomes something this workload holds.
/// </summary>
public sealed class JwksKeyParsingTests
{
    public static TheoryData<string> PrivateMembers() => new() { "d", "p", "q", "dp", "dq", "qi", "k" };

    [Theory]
    [MemberData(nameof(PrivateMembers))]
    public void Compile_KeyWithPrivateMember_ErrorNamesKeyAndMember(string member)
    {
        var config = Config(RequestAuthentication("ra", JwtRule()));
        config.Providers["origins-0"].LocalJwks.InlineString = WithMember(TwoKeyJwks, keyIndex: 1, member);
        var errors = new List<string>();

        Assert.Null(JwtAuthenticator.Compile(config, "jwt", errors));

        Assert.Contains(errors, e => e.StartsWith($"jwt.providers[origins-0].local_jwks.inline_string: keys[1].{member}: a private key member", StringComparison.Ordinal));
    }

    [Fact]
    public void Compile_EcKeyWithPrivateScalar_Refused()
    {
        var config = Config(RequestAuthentication("ra", JwtRule(jwks: EcJwks)));
        config.Providers["origins-0"].LocalJwks.InlineString = WithMember(EcJwks, keyIndex: 0, "d");
        var errors = new List<string>();

        Assert.Null(JwtAuthenticator.Compile(config, "jwt", errors));
        Assert.Contains(errors, e => e.Contains("keys[0].d: a private key member", StringComparison.Ordinal));
    }

    [Fact]
    public void Decode_ListenerWithPrivateJwk_NackedWithPath()
    {
        var jwt = Config(RequestAuthentication("ra", JwtRule()));
        jwt.Providers["origins-0"].LocalJwks.InlineString = WithMember(TwoKeyJwks, keyIndex: 0, "d");

        Assert.False(InboundPolicyDecoder.TryDecode(Listener([], jwt), out _, out var errors));
        Assert.Contains(errors, e => e.Contains("providers[origins-0].local_jwks.inline_string: keys[0].d: a private key member", StringComparison.Ordinal));
    }

    [Fact]
    public void Compile_PublicKeys_Accepted()
    {
        var errors = new List<string>();

        Assert.NotNull(JwtAuthenticator.Compile(Config(RequestAuthentication("ra", JwtRule())), "jwt", errors));
        Assert.Empty(errors);
    }

    private static string WithMember(string jwks, int keyIndex, string member)
    {
        var keys = JsonSerializer.Deserialize<Dictionary<string, List<Dictionary<string, string>>>>(jwks)!;
        keys["keys"][keyIndex][member] = Base64UrlEncoder.Encode("secret");
        return JsonSerializer.Serialize(keys);
    }
}
