using System.Buffers.Text;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>A real control plane on 127.0.0.1 port 0 with its own state folder, reached over real TLS.</summary>
internal sealed class SecureHost : IAsyncDisposable
{
    private readonly bool _ownsRoot;
    private readonly List<IDisposable> _disposables = [];

    private SecureHost(string root, bool ownsRoot, ControlPlaneHost host)
    {
        Root = root;
        _ownsRoot = ownsRoot;
        Host = host;
        Admin = new HttpClient { BaseAddress = host.AdminAddress, Timeout = TimeSpan.FromSeconds(10) };
        Admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminSecret);
    }

    /// <summary>The admin credential the control plane made in its state folder.</summary>
    public string AdminSecret => File.ReadAllText(Path.Combine(StateDirectory, Mesh.ControlPlane.Admin.AdminCredential.FileName)).Trim();

    public string Root { get; }

    public ControlPlaneHost Host { get; }

    public HttpClient Admin { get; }

    public string StateDirectory => Path.Combine(Root, "state");

    public string ConfigDirectory => Path.Combine(Root, "config");

    public CertificateAuthority Ca => (CertificateAuthority)Host.Services.GetService(typeof(CertificateAuthority))!;

    public static string NewRoot() => Path.Combine(Path.GetTempPath(), "mesh-ca-it-" + Guid.NewGuid().ToString("N"));

    /// <summary>Starts a control plane; pass <paramref name="root"/> to reuse a state folder (the caller then deletes it).</summary>
    /// <param name="plaintextXds">Also bind the plaintext ADS port (ControlPlane:XdsAddress), which is off by default.</param>
    public static Task<SecureHost> StartAsync(string? root = null, string[]? args = null, bool plaintextXds = false, params (string File, string Yaml)[] files) =>
        StartAsync(root, args, plaintextXds, configureServices: null, files);

    /// <summary>Starts a control plane with services replaced by <paramref name="configureServices"/> (e.g. a FakeTimeProvider).</summary>
    public static async Task<SecureHost> StartAsync(string? root, string[]? args, bool plaintextXds, Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? configureServices, params (string File, string Yaml)[] files)
    {
        var ownsRoot = root is null;
        root ??= NewRoot();
        Directory.CreateDirectory(Path.Combine(root, "config"));
        foreach (var (file, yaml) in files)
        {
            await File.WriteAllTextAsync(Path.Combine(root, "config", file), yaml);
        }

        var host = await ControlPlaneHost.StartAsync(
        [
            $"--ControlPlane:ConfigDirectory={Path.Combine(root, "config")}",
            $"--ControlPlane:StateDirectory={Path.Combine(root, "state")}",
            "--ControlPlane:AdminAddress=http://127.0.0.1:0",
            "--ControlPlane:SecureAddress=https://127.0.0.1:0",
            "--ControlPlane:DebounceInterval=00:00:00.020",
            "--Logging:LogLevel:Default=Warning",
            .. plaintextXds ? ["--ControlPlane:XdsAddress=http://127.0.0.1:0"] : Array.Empty<string>(),
            .. args ?? [],
        ], configureServices);
        return new SecureHost(root, ownsRoot, host);
    }

    /// <summary>
    /// A gRPC channel to the secure port trusting only the served bundle, optionally with a client certificate, and
    /// optionally connecting from <paramref name="from"/> (another loopback address, 127.0.0.2 and up: another peer).
    /// </summary>
    public GrpcChannel SecureChannel(X509Certificate2? clientCertificate = null, IPAddress? from = null)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(Ca.BundlePem);
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                // Reuse the handshake's chain: its ExtraStore holds the intermediates the server sent.
                RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                {
                    if (chain is null)
                    {
                        return false;
                    }

                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    chain.ChainPolicy.CustomTrustStore.AddRange(roots);
                    return certificate is X509Certificate2 server && chain.Build(server);
                },
                LocalCertificateSelectionCallback = clientCertificate is null ? null : (_, _, _, _, _) => clientCertificate,
                ClientCertificates = clientCertificate is null ? null : [clientCertificate],
            },
        };
        if (from is not null)
        {
            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(from.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    socket.Bind(new IPEndPoint(from, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }

        var channel = GrpcChannel.ForAddress(Host.SecureAddress, new GrpcChannelOptions { HttpHandler = handler });
        _disposables.Add(channel);
        return channel;
    }

    /// <summary>A gRPC channel to the plaintext ADS port; the host must have been started with <c>plaintextXds: true</c>.</summary>
    public GrpcChannel PlaintextChannel()
    {
        var channel = GrpcChannel.ForAddress(Host.XdsAddress ?? throw new InvalidOperationException("The plaintext xDS port is off; start the SecureHost with plaintextXds: true."));
        _disposables.Add(channel);
        return channel;
    }

    /// <summary>Mints a bootstrap token (single-use unless <paramref name="reusable"/>) with the host's own key.</summary>
    public string Token(string ns, string sa, TimeSpan? ttl = null, bool reusable = false) =>
        ((BootstrapTokens)Host.Services.GetService(typeof(BootstrapTokens))!).Mint(ns, sa, ttl ?? TimeSpan.FromHours(1), reusable).Token;

    public IstioCertificateService.IstioCertificateServiceClient CaClient(X509Certificate2? clientCertificate = null, IPAddress? from = null) =>
        new(SecureChannel(clientCertificate, from));

    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    /// <summary>Requests a certificate with a fresh P-256 key; returns the chain and the leaf with its private key.</summary>
    public async Task<(IReadOnlyList<X509Certificate2> Chain, X509Certificate2 Leaf)> IssueAsync(string? token = null, X509Certificate2? clientCertificate = null, long ttlSeconds = 0, IPAddress? from = null)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _disposables.Add(key);
        var response = await CaClient(clientCertificate, from).CreateCertificateAsync(
            new IstioCertificateRequest { Csr = Csr(key), ValidityDuration = ttlSeconds },
            token is null ? null : Bearer(token));
        var chain = response.CertChain.Select(pem => X509Certificate2.CreateFromPem(pem)).ToList();
        var leaf = chain[0].CopyWithPrivateKey(key);
        return (chain, leaf);
    }

    public static string Csr(AsymmetricAlgorithm key, string subject = "CN=workload", Action<CertificateRequest>? configure = null)
    {
        var request = key switch
        {
            ECDsa ec => new CertificateRequest(subject, ec, HashAlgorithmName.SHA256),
            RSA rsa => new CertificateRequest(subject, rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            _ => throw new ArgumentException("unsupported key", nameof(key)),
        };
        configure?.Invoke(request);
        return request.CreateSigningRequestPem();
    }

    /// <summary>A compact JWS signed with <paramref name="key"/> (or unsigned for alg none) with the given header/payload.</summary>
    public static string Jws(IDictionary<string, object> header, IDictionary<string, object> payload, ECDsa? key)
    {
        var input = Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(header)) + "." + Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(payload));
        var signature = key is null ? [] : key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return input + "." + Base64Url.EncodeToString(signature);
    }

    public static Dictionary<string, object> Claims(
        string ns = "default", string sa = "orders", string aud = BootstrapTokens.Audience, DateTimeOffset? exp = null, string iss = BootstrapTokens.Issuer, DateTimeOffset? nbf = null)
    {
        var now = DateTimeOffset.UtcNow;
        var claims = new Dictionary<string, object>
        {
            ["iss"] = iss,
            ["aud"] = aud,
            ["sub"] = $"system:serviceaccount:{ns}:{sa}",
            ["ns"] = ns,
            ["sa"] = sa,
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = (exp ?? now.AddHours(1)).ToUnixTimeSeconds(),
            ["jti"] = Guid.NewGuid().ToString("N"),
        };
        if (nbf is { } notBefore)
        {
            claims["nbf"] = notBefore.ToUnixTimeSeconds();
        }

        return claims;
    }

    public ECDsa TokenSigningKey()
    {
        var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(BootstrapTokens.KeyPath(new ControlPlaneOptions { StateDirectory = StateDirectory })));
        _disposables.Add(key);
        return key;
    }

    public async ValueTask DisposeAsync()
    {
        Admin.Dispose();
        foreach (var disposable in _disposables)
        {
            disposable.Dispose();
        }

        await Host.DisposeAsync();
        if (_ownsRoot)
        {
            Directory.Delete(Root, recursive: true);
        }
    }
}
