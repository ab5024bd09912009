using System.Security.Cryptography;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Authorization;
using Mesh.Client.Authorization.Jwt;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Benchmarks;

/// <summary>
/// Inbound authorization with a JWT rule, per request: RequestAuthentication (RS256, 2048-bit key) then an ALLOW policy
/// on the request principal. A token seen for the first time pays the signature check; a token seen again comes from the
/// validated-token cache (Envoy's jwt_cache_config). Target for the cache hit: ≤ 2 µs and 0 bytes.
/// </summary>
[MemoryDiagnoser]
public class JwtAuthenticationBenchmarks
{
    private const string Issuer = "https://issuer.example.com";
    private readonly DefaultHttpContext _context = new();
    private InboundPolicy _policy = null!;
    private JwtProvider _provider = null!;
    private string _token = null!;
    private DateTimeOffset _now;

    [GlobalSetup]
    public void Setup()
    {
        using var key = RSA.Create(2048);
        var p = key.ExportParameters(false);
        var jwks = JsonSerializer.Serialize(new { keys = new[] { new Dictionary<string, string> { ["kty"] = "RSA", ["kid"] = "k1", ["alg"] = "RS256", ["n"] = Base64UrlEncoder.Encode(p.Modulus), ["e"] = Base64UrlEncoder.Encode(p.Exponent) } } });
        _now = DateTimeOffset.UtcNow;
        _token = new JsonWebTokenHandler().CreateToken(
            JsonSerializer.Serialize(new { iss = Issuer, sub = "alice", aud = "orders", exp = _now.AddHours(1).ToUnixTimeSeconds(), scope = "read write" }),
            new SigningCredentials(new RsaSecurityKey(key) { KeyId = "k1" }, SecurityAlgorithms.RsaSha256));

        var rule = new JwtRuleModel(Issuer, ["orders"], null, jwks, [], [], false, null, [], []);
        var jwt = JwtAuthnTranslator.Build([new RequestAuthenticationModel("default", "jwt", null, [rule], "bench.yaml", 1)], jwks: null)!;
        var listener = Listener([Allow("alice", Rule(from: [Source() with { RequestPrincipals = [Issuer + "/alice"] }], to: [Operation(paths: ["/api/*"])]))]);
        foreach (var chain in listener.FilterChains)
        {
            var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
            manager.HttpFilters.Insert(0, new HttpFilter { Name = JwtAuthnTranslator.FilterName, TypedConfig = Any.Pack(jwt) });
            chain.Filters[0].TypedConfig = Any.Pack(manager);
        }

        if (!InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors))
        {
            throw new InvalidOperationException(string.Join("; ", errors));
        }

        _policy = policy;
        _provider = policy.Jwt!.Providers[0];
        _context.Request.Method = "GET";
        _context.Request.Path = "/api/orders/42";
        _context.Request.Headers.Authorization = "Bearer " + _token;
        if (!TokenSeenAgain_CacheHit())
        {
            throw new InvalidOperationException("the benchmark request must be allowed");
        }
    }

    /// <summary>The per-request path for a token in the cache: extract, look up, then RBAC on the request principal.</summary>
    [Benchmark(Baseline = true)]
    public bool TokenSeenAgain_CacheHit()
    {
        var pending = _policy.Jwt!.AuthenticateAsync(_context.Request, _now);
        if (!pending.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("a cached token must authenticate synchronously");
        }

        var outcome = pending.Result;
        return outcome.IsAllowed && _policy.Authorize("GET", "/api/orders/42", "orders", _context.Request.Headers, null, null, outcome.Principal).IsAllowed;
    }

    /// <summary>A token seen for the first time: parse, signature check (RS256), claims, then RBAC.</summary>
    [Benchmark]
    public async Task<bool> TokenSeenFirstTime_SignatureCheck()
    {
        var token = _provider.ExtractAt(_context.Request, 0); // the Authorization header
        var (status, principal) = await _provider.VerifyAsync(token, _now);
        return status == JwtStatus.Ok && _policy.Authorize("GET", "/api/orders/42", "orders", _context.Request.Headers, null, null, principal).IsAllowed;
    }
}
