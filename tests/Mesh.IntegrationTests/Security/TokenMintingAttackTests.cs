using System.Buffers.Text;
using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Xds.Istio.Auth.V1;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// Issue 7, first hole: a process on the same machine mints a token for any identity (the control plane's own
/// included) through the unauthenticated admin API, certifies it, or replays a token a workload already used.
/// Against a real control plane process, as that attacker would.
/// </summary>
public sealed class TokenMintingAttackTests(ITestOutputHelper output)
{
    private static readonly string ControlPlaneId = SpiffeId("mesh-control-plane", "mesh-system");

    [Fact]
    public async Task AdminApi_UnauthenticatedOrRebound_MintsNothing_AndNoCredentialMintsTheControlPlanesIdentity()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var admin = mesh.ControlPlane.AdminAddress;
        using var attacker = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };

        // 1. No credential: what any local process (or a browser page) could send.
        using var anonymous = await attacker.PostAsJsonAsync(new Uri(admin, "/tokens"), new { @namespace = "mesh-system", serviceAccount = "mesh-control-plane" });
        var anonymousBody = await anonymous.Content.ReadAsStringAsync();
        Console.WriteLine($"[admin-mint] unauthenticated POST /tokens for {ControlPlaneId} → {(int)anonymous.StatusCode}");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.DoesNotContain("\"token\"", anonymousBody, StringComparison.Ordinal);

        // 2. A guessed credential.
        using var guessed = await PostAsync(attacker, admin, "default", "orders", credential: "0123456789abcdef0123456789abcdef0123456789a", host: null);

        // 3. DNS rebinding: a page served from attacker.example re-pointed at 127.0.0.1 sends its own Host (and even the right credential would not help).
        using var rebound = await PostAsync(attacker, admin, "default", "orders", mesh.ControlPlane.ReadAdminCredential(), host: $"attacker.example:{admin.Port}");

        // 4. The operator's own credential still cannot mint the control plane's identity.
        using var reserved = await PostAsync(attacker, admin, "mesh-system", "mesh-control-plane", mesh.ControlPlane.ReadAdminCredential(), host: null);
        var reservedBody = await reserved.Content.ReadAsStringAsync();

        output.WriteLine($"anonymous {(int)anonymous.StatusCode} {anonymousBody}; guessed {(int)guessed.StatusCode}; rebound {(int)rebound.StatusCode}; reserved {(int)reserved.StatusCode} {reservedBody}");
        Console.WriteLine($"[admin-mint] wrong credential → {(int)guessed.StatusCode}, foreign Host → {(int)rebound.StatusCode}, control plane identity with the credential → {(int)reserved.StatusCode}");
        Assert.Equal(HttpStatusCode.Unauthorized, guessed.StatusCode);
        Assert.Equal(HttpStatusCode.MisdirectedRequest, rebound.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, reserved.StatusCode);
        Assert.Contains($"{ControlPlaneId} is a reserved identity", reservedBody, StringComparison.Ordinal);
        Assert.DoesNotContain("\"token\"", reservedBody, StringComparison.Ordinal);

        // The operator's path keeps working.
        using var allowed = await PostAsync(attacker, admin, "default", "orders", mesh.ControlPlane.ReadAdminCredential(), host: null);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    [Fact]
    public async Task Ca_TokenNamingTheControlPlane_FromAnOlderBuild_IsRefused_AndAUsedTokenCannotBeReplayed()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        using var root = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(mesh.ControlPlane.RootCertificate));
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, certificate, _, _) => ChainsTo(certificate, root) },
        };
        using var channel = GrpcChannel.ForAddress(mesh.ControlPlane.SecureAddress, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var ca = new IstioCertificateService.IstioCertificateServiceClient(channel);

        // A token for the control plane's identity signed by this control plane's own key, as the old build minted for anyone.
        var forged = SignWithStateKey(mesh.StateDirectory, "mesh-system", "mesh-control-plane");
        var reservedError = await Assert.ThrowsAsync<RpcException>(() => ca.CreateCertificateAsync(NewCsr(), Bearer(forged)).ResponseAsync);

        // A workload spends its token; the same token, read from its environment by another process, buys nothing.
        var token = await mesh.ControlPlane.MintTokenAsync("orders");
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", mesh.ControlPlane.SecureEnvironment(token));
        var replayError = await Assert.ThrowsAsync<RpcException>(() => ca.CreateCertificateAsync(NewCsr(), Bearer(token)).ResponseAsync);

        output.WriteLine($"reserved: {reservedError.Status}; replay: {replayError.Status}");
        Console.WriteLine($"[ca-token-abuse] certificate for {ControlPlaneId} with a token signed by the mesh's key → {reservedError.StatusCode}; replay of orders-1's spent token → {replayError.StatusCode}");
        Assert.Equal(StatusCode.Unauthenticated, reservedError.StatusCode);
        Assert.Contains($"{ControlPlaneId} is a reserved identity", reservedError.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(StatusCode.Unauthenticated, replayError.StatusCode);
        Assert.Contains("was already used", replayError.Status.Detail, StringComparison.Ordinal);
        Assert.False(orders.Process.HasExited, "the workload that used its token legitimately keeps running");
    }

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, Uri admin, string ns, string serviceAccount, string credential, string? host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(admin, "/tokens"))
        {
            Content = JsonContent.Create(new { @namespace = ns, serviceAccount }),
        };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", credential);
        if (host is not null)
        {
            request.Headers.Host = host;
        }

        return await http.SendAsync(request);
    }

    private static IstioCertificateRequest NewCsr()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new IstioCertificateRequest { Csr = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256).CreateSigningRequestPem() };
    }

    private static Metadata Bearer(string token) => new() { { "authorization", $"Bearer {token}" } };

    /// <summary>An ES256 bootstrap token signed with StateDirectory/ca/token-signing-key.pem, claims as every build mints them.</summary>
    private static string SignWithStateKey(string stateDirectory, string ns, string serviceAccount)
    {
        using var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(Path.Combine(stateDirectory, "ca", "token-signing-key.pem")));
        var now = DateTimeOffset.UtcNow;
        var header = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["alg"] = "ES256", ["typ"] = "JWT" });
        var payload = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["iss"] = "mesh-control-plane",
            ["aud"] = "mesh-ca",
            ["sub"] = $"system:serviceaccount:{ns}:{serviceAccount}",
            ["ns"] = ns,
            ["sa"] = serviceAccount,
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = now.AddHours(1).ToUnixTimeSeconds(),
            ["jti"] = Guid.NewGuid().ToString("N"),
        });
        var input = Base64Url.EncodeToString(header) + "." + Base64Url.EncodeToString(payload);
        var signature = key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return input + "." + Base64Url.EncodeToString(signature);
    }

    private static bool ChainsTo(X509Certificate? certificate, X509Certificate2 root)
    {
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var presented = new X509Certificate2(certificate);
        return chain.Build(presented);
    }
}
