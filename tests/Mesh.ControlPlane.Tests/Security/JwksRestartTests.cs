using System.Net;
using System.Security.Cryptography;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>
/// A real control plane restarted (same state folder) while its RequestAuthentication's JWKS server, a real Kestrel on
/// 127.0.0.1, is down: its first valid snapshot already carries the last good keys, so a valid token still verifies.
/// </summary>
public sealed class JwksRestartTests
{
    private const string Issuer = "https://issuer.example.com";

    [Fact]
    public async Task Restart_WhileJwksServerDown_FirstSnapshotCarriesLastGoodKeys_ValidTokenPasses()
    {
        using var signing = RSA.Create(2048);
        var p = signing.ExportParameters(false);
        var jwks = $$"""{"keys":[{"kty":"RSA","kid":"a","alg":"RS256","n":"{{Base64UrlEncoder.Encode(p.Modulus)}}","e":"{{Base64UrlEncoder.Encode(p.Exponent)}}"}]}""";
        var root = SecureHost.NewRoot();
        try
        {
            var server = await JwksServerAsync(jwks);
            var uri = new Uri(new Uri(server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()), "/jwks");
            var config = ("ra.yaml", $$$"""
                apiVersion: networking.istio.io/v1
                kind: ServiceEntry
                metadata: {name: orders}
                spec:
                  hosts: [orders.default.svc.cluster.local]
                  ports: [{number: 80, name: http, protocol: HTTP}]
                  endpoints: [{address: 127.0.0.1, ports: {http: 8080}, labels: {app: orders}}]
                ---
                apiVersion: security.istio.io/v1
                kind: RequestAuthentication
                metadata: {name: jwt}
                spec:
                  jwtRules:
                  - {issuer: "{{{Issuer}}}", jwksUri: "{{{uri}}}"}
                """);

            await using (var first = await SecureHost.StartAsync(root, null, false, config))
            {
                var publisher = first.Host.Services.GetRequiredService<XdsPublisher>();
                await Poll.UntilAsync(() => publisher.HasValidSnapshot && ListenerJwks(publisher) == jwks, "the first control plane never pushed the fetched keys");
            }

            await server.DisposeAsync(); // the IdP goes down, then the control plane restarts

            await using var second = await SecureHost.StartAsync(root, null, false);
            var restarted = second.Host.Services.GetRequiredService<XdsPublisher>();
            await Poll.UntilAsync(() => restarted.HasValidSnapshot, "the restarted control plane never had a valid snapshot");

            var served = ListenerJwks(restarted);
            Assert.Equal(jwks, served);
            Assert.True(await TokenPassesAsync(served!, signing));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task<WebApplication> JwksServerAsync(string jwks)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var server = builder.Build();
        server.MapGet("/jwks", context => context.Response.WriteAsync(jwks, context.RequestAborted));
        await server.StartAsync();
        return server;
    }

    private static string? ListenerJwks(XdsPublisher publisher)
    {
        foreach (var inbound in publisher.Current.InboundListeners.Values)
        {
            var listener = inbound.Resource.Unpack<Mesh.Xds.Envoy.Config.Listener.V3.Listener>();
            var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3.HttpConnectionManager>();
            var filter = manager.HttpFilters.FirstOrDefault(f => f.Name == JwtAuthnTranslator.FilterName);
            if (filter is not null)
            {
                return filter.TypedConfig.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication>().Providers["origins-0"].LocalJwks.InlineString;
            }
        }

        return null;
    }

    /// <summary>Validates an RS256 token against <paramref name="jwks"/> with IdentityModel, as the client does.</summary>
    private static async Task<bool> TokenPassesAsync(string jwks, RSA signing)
    {
        var handler = new JsonWebTokenHandler();
        var token = handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            Expires = DateTime.UtcNow.AddHours(1),
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(signing) { KeyId = "a" }, SecurityAlgorithms.RsaSha256),
        });
        var result = await handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = Issuer,
            ValidateAudience = false,
            IssuerSigningKeys = new JsonWebKeySet(jwks).GetSigningKeys(),
        });
        return result.IsValid;
    }
}
