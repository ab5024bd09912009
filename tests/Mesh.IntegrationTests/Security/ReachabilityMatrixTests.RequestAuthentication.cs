using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// RequestAuthentication cells of the reachability matrix, on real workloads: keys inline, keys from a jwksUri served by
/// a real JWKS server (then failing: the last good keys keep serving), and a jwksUri that never answered (every token
/// 401, no token passes). GET needs nothing; DELETE needs a request principal (AuthorizationPolicy requestPrincipals).
/// </summary>
public sealed partial class ReachabilityMatrixTests
{
    private const string JwtIssuer = "https://issuer.mesh.test";

    [Fact]
    public async Task RequestAuthentication_TokenKinds_EachGetsExactlyTheExpectedStatus()
    {
        using var key = RSA.Create(2048);
        using var otherKey = RSA.Create(2048);
        var jwks = JsonSerializer.Serialize(new { keys = new[] { Jwk("k1", key) } });
        var jwksStatus = 200;
        var failedFetches = 0;
        await using var jwksServer = await StartJwksServerAsync(() =>
        {
            if (Volatile.Read(ref jwksStatus) == 200)
            {
                return (200, jwks);
            }

            Interlocked.Increment(ref failedFetches);
            return (500, "down");
        });
        var deadPort = Ports.Free();

        await using var mesh = await LocalMesh.StartAsync(output, controlPlaneArgs: ["--ControlPlane:Jwks:RefreshInterval=00:00:02", "--ControlPlane:Jwks:RetryInterval=00:00:01", "--ControlPlane:Jwks:FetchTimeout=00:00:02"]);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "jwt.yaml"), string.Join("---\n",
            JwtServiceYaml("jwt-inline-svc", $"jwks: '{jwks}'"),
            JwtServiceYaml("jwt-uri-svc", $"jwksUri: {jwksServer.Uri}"),
            JwtServiceYaml("jwt-down-svc", $"jwksUri: http://127.0.0.1:{deadPort}/jwks")));

        using var plain = CreatePlainClient();
        var servers = new Dictionary<string, Mesh.Samples.Processes.WorkloadProcess>();
        foreach (var service in (string[])["jwt-inline-svc", "jwt-uri-svc", "jwt-down-svc"])
        {
            servers[service] = await mesh.StartWorkloadAsync("Mesh.Samples.Orders", service, $"{service}-1");
        }

        foreach (var server in servers.Values)
        {
            await WaitReadyAnyWayAsync(server, plain, plain);
        }

        var now = DateTimeOffset.UtcNow;
        var valid = Sign(key, "k1", JwtIssuer, now.AddHours(1));
        var expired = Sign(key, "k1", JwtIssuer, now.AddMinutes(-10));
        var wrongKey = Sign(otherKey, "k1", JwtIssuer, now.AddHours(1));
        var wrongIssuer = Sign(key, "k1", "https://evil.test", now.AddHours(1));
        var algNone = $"{Base64UrlEncoder.Encode("""{"alg":"none","kid":"k1"}""")}.{valid.Split('.')[1]}.";

        // The policy (and, for jwksUri, the keys) reach each server over xDS: wait for each one's signature first.
        await Eventually.ReturnsAsync(() => StatusAsync(plain, servers["jwt-inline-svc"], HttpMethod.Get, expired), s => s == 401, "jwt-inline-svc to enforce its RequestAuthentication", TimeSpan.FromSeconds(60));
        await Eventually.ReturnsAsync(() => StatusAsync(plain, servers["jwt-uri-svc"], HttpMethod.Get, valid), s => s == 200, "jwt-uri-svc to get the fetched keys", TimeSpan.FromSeconds(60));
        await Eventually.ReturnsAsync(() => StatusAsync(plain, servers["jwt-down-svc"], HttpMethod.Get, expired), s => s == 401, "jwt-down-svc to enforce its RequestAuthentication", TimeSpan.FromSeconds(60));

        var cells = new List<(string Name, int Expected, int Actual)>();
        async Task CellAsync(string service, string name, HttpMethod method, string? token, int expected) =>
            cells.Add(($"{service} × {method} {name}", expected, await StatusAsync(plain, servers[service], method, token)));

        foreach (var service in (string[])["jwt-inline-svc", "jwt-uri-svc"])
        {
            await CellAsync(service, "valid token", HttpMethod.Get, valid, 200);
            await CellAsync(service, "no token", HttpMethod.Get, null, 200);
            await CellAsync(service, "expired token", HttpMethod.Get, expired, 401);
            await CellAsync(service, "token signed by a key not in the JWKS", HttpMethod.Get, wrongKey, 401);
            await CellAsync(service, "token from another issuer", HttpMethod.Get, wrongIssuer, 401);
            await CellAsync(service, "alg none token", HttpMethod.Get, algNone, 401);
            await CellAsync(service, "no token, requestPrincipals required", HttpMethod.Delete, null, 403);
            await CellAsync(service, "valid token, requestPrincipals required", HttpMethod.Delete, valid, 200);
            await CellAsync(service, "expired token, requestPrincipals required", HttpMethod.Delete, expired, 401);
        }

        // A jwksUri that never answered: every token 401, no token still passes (and still needs a principal for DELETE).
        await CellAsync("jwt-down-svc", "valid token (JWKS never fetched)", HttpMethod.Get, valid, 401);
        await CellAsync("jwt-down-svc", "no token (JWKS never fetched)", HttpMethod.Get, null, 200);
        await CellAsync("jwt-down-svc", "no token, requestPrincipals required", HttpMethod.Delete, null, 403);

        // The JWKS server starts failing: after failed refreshes the last good keys keep serving.
        Volatile.Write(ref jwksStatus, 500);
        await Eventually.ReturnsAsync(() => Task.FromResult(Volatile.Read(ref failedFetches)), n => n >= 2, "the control plane to retry the failing JWKS server", TimeSpan.FromSeconds(60));
        await CellAsync("jwt-uri-svc", "valid token after the JWKS server failed", HttpMethod.Get, valid, 200);
        await CellAsync("jwt-uri-svc", "wrong-key token after the JWKS server failed", HttpMethod.Get, wrongKey, 401);

        var wrong = cells.Where(c => c.Expected != c.Actual).ToList();
        foreach (var cell in cells)
        {
            Console.WriteLine($"[reachability-matrix]   {(cell.Expected == cell.Actual ? "ok   " : "WRONG")} {cell.Name}: expected HTTP {cell.Expected}, got HTTP {cell.Actual}");
        }

        Console.WriteLine($"[reachability-matrix] request authentication: {cells.Count} cells checked, {wrong.Count} wrong");
        Assert.True(wrong.Count == 0, $"{wrong.Count} wrong cell(s): {string.Join("; ", wrong.Select(c => $"{c.Name}: expected {c.Expected}, got {c.Actual}"))}");
    }

    private static async Task<int> StatusAsync(HttpClient client, Mesh.Samples.Processes.WorkloadProcess server, HttpMethod method, string? token)
    {
        using var request = new HttpRequestMessage(method, Http(server, method == HttpMethod.Delete ? "/orders/1" : "/_stats"));
        if (token is not null)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        }

        try
        {
            using var response = await client.SendAsync(request);
            return (int)response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return 0;
        }
    }

    private static string JwtServiceYaml(string service, string keys) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: {{{service}}}, namespace: default}
        spec:
          hosts: [{{{service}}}.default.svc.cluster.local]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          workloadSelector:
            labels: {app: {{{service}}}}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: {{{service}}}, namespace: default}
        spec:
          selector: {matchLabels: {app: {{{service}}}}}
          mtls: {mode: DISABLE}
        ---
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {name: {{{service}}}, namespace: default}
        spec:
          selector: {matchLabels: {app: {{{service}}}}}
          jwtRules:
          - issuer: {{{JwtIssuer}}}
            {{{keys}}}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: {{{service}}}, namespace: default}
        spec:
          selector: {matchLabels: {app: {{{service}}}}}
          rules:
          - to: [{operation: {methods: [GET]}}]
          - from: [{source: {requestPrincipals: ["*"]}}]
            to: [{operation: {methods: [DELETE]}}]

        """;

    private static Dictionary<string, string> Jwk(string kid, RSA key)
    {
        var p = key.ExportParameters(false);
        return new() { ["kty"] = "RSA", ["kid"] = kid, ["alg"] = "RS256", ["n"] = Base64UrlEncoder.Encode(p.Modulus), ["e"] = Base64UrlEncoder.Encode(p.Exponent) };
    }

    private static string Sign(RSA key, string kid, string issuer, DateTimeOffset expires) =>
        new JsonWebTokenHandler().CreateToken(
            JsonSerializer.Serialize(new { iss = issuer, sub = "alice", aud = "orders", exp = expires.ToUnixTimeSeconds() }),
            new SigningCredentials(new RsaSecurityKey(key) { KeyId = kid }, SecurityAlgorithms.RsaSha256));

    private static async Task<JwksServer> StartJwksServerAsync(Func<(int Status, string Body)> answer)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
        var app = builder.Build();
        app.MapGet("/jwks", async context =>
        {
            var (status, body) = answer();
            context.Response.StatusCode = status;
            await context.Response.WriteAsync(body, context.RequestAborted);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new JwksServer(app, new Uri(new Uri(address), "/jwks"));
    }

    private sealed record JwksServer(WebApplication App, Uri Uri) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => App.DisposeAsync();
    }
}
