using System.Diagnostics;
using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// Helpers of the security integration tests: external tools (curl), X.509 certificates forged with
/// CertificateRequest (some signed with the mesh root key from the control plane's state folder), and
/// readiness probes that work whatever the port's PeerAuthentication mode.
/// </summary>
internal static class SecurityKit
{
    public const string TrustDomain = "cluster.local";

    public static string SpiffeId(string serviceAccount, string @namespace = "default", string trustDomain = TrustDomain) =>
        $"spiffe://{trustDomain}/ns/{@namespace}/sa/{serviceAccount}";

    /// <summary>Fails the test (not skips) when a tool is missing, saying how to install it.</summary>
    public static void RequireTool(string tool)
    {
        var found = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, tool)));
        Assert.True(found, $"'{tool}' is required by this test and is not on PATH. Install it: apt-get install -y openssl curl (the CI script .ci/run does this).");
    }

    public sealed record CurlResult(int ExitCode, string HttpCode, string Stderr)
    {
        /// <summary>Gets whether the server answered with any HTTP response at all.</summary>
        public bool GotResponse => HttpCode is not ("000" or "");

        public override string ToString() => $"curl exit {ExitCode}, http {HttpCode}{(Stderr.Length > 0 ? ", " + Stderr.Trim().Split('\n')[^1] : string.Empty)}";
    }

    /// <summary>Runs curl (no proxy, 10 s limit) and returns its exit code and the HTTP status it saw ("000" when none).</summary>
    public static async Task<CurlResult> CurlAsync(params string[] args)
    {
        var start = new ProcessStartInfo("curl")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in (string[])["-s", "-S", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", .. args])
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return new CurlResult(process.ExitCode, (await stdout).Trim(), await stderr);
    }

    /// <summary>Loads the mesh root (certificate + private key) from the control plane's state folder.</summary>
    public static X509Certificate2 LoadMeshRoot(string stateDirectory)
    {
        var certificate = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(stateDirectory, "ca", "root-cert.pem")));
        using var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(Path.Combine(stateDirectory, "ca", "root-key.pem")));
        using (certificate)
        {
            return certificate.CopyWithPrivateKey(key);
        }
    }

    /// <summary>Makes a self-signed CA (ECDSA P-256) that the mesh does not trust.</summary>
    public static X509Certificate2 CreateForeignRoot(string commonName)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
    }

    public sealed record LeafSpec(
        string[] UriSans,
        DateTimeOffset NotBefore,
        DateTimeOffset NotAfter,
        bool IsCa = false);

    public static LeafSpec ValidSpec(params string[] uriSans) =>
        new(uriSans, DateTimeOffset.UtcNow.AddMinutes(-2), DateTimeOffset.UtcNow.AddHours(1));

    /// <summary>
    /// Makes an SVID-shaped leaf (empty subject, critical SAN of URIs, KeyUsage digitalSignature, EKU server+client)
    /// signed by <paramref name="issuer"/>, or self-signed when it is null; writes cert.pem and key.pem into <paramref name="directory"/>.
    /// </summary>
    public static (string Certificate, string Key) WriteLeaf(string directory, LeafSpec spec, X509Certificate2? issuer)
    {
        Directory.CreateDirectory(directory);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(spec.IsCa, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(
            spec.IsCa ? X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign : X509KeyUsageFlags.DigitalSignature,
            true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var san = new SubjectAlternativeNameBuilder();
        foreach (var uri in spec.UriSans)
        {
            san.AddUri(new Uri(uri));
        }

        request.CertificateExtensions.Add(san.Build(critical: true));

        X509Certificate2 certificate;
        if (issuer is null)
        {
            certificate = request.CreateSelfSigned(spec.NotBefore, spec.NotAfter);
        }
        else
        {
            request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
            var serial = RandomNumberGenerator.GetBytes(16);
            serial[0] &= 0x7F;
            using var signed = request.Create(issuer, spec.NotBefore, spec.NotAfter, serial);
            certificate = signed.CopyWithPrivateKey(key);
        }

        using (certificate)
        {
            var certificatePath = Path.Combine(directory, "cert.pem");
            var keyPath = Path.Combine(directory, "key.pem");
            File.WriteAllText(certificatePath, certificate.ExportCertificatePem() + "\n");
            File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n");
            return (certificatePath, keyPath);
        }
    }

    /// <summary>Gets the single URI SAN values of a certificate (empty when none).</summary>
    public static IReadOnlyList<string> UriSans(X509Certificate2 certificate)
    {
        var result = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17")
            {
                continue;
            }

            var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
            while (reader.HasData)
            {
                var tag = reader.PeekTag();
                if (tag.TagClass == TagClass.ContextSpecific && tag.TagValue == 6)
                {
                    result.Add(reader.ReadCharacterString(UniversalTagNumber.IA5String, new Asn1Tag(TagClass.ContextSpecific, 6)));
                }
                else
                {
                    reader.ReadEncodedValue();
                }
            }
        }

        return result;
    }

    /// <summary>
    /// Waits until a workload's /healthz/ready answers 200, over mTLS (<paramref name="mtls"/>) or, for ports under
    /// DISABLE that refuse TLS, over plaintext.
    /// </summary>
    public static Task WaitReadyAnyWayAsync(WorkloadProcess workload, HttpClient mtls, HttpClient plain) =>
        Eventually.HoldsAsync(
            async () => await IsReadyAsync(mtls, Https(workload, "/healthz/ready")) || await IsReadyAsync(plain, Http(workload, "/healthz/ready")),
            $"{workload.Instance} to be ready",
            TimeSpan.FromSeconds(90));

    public static async Task<bool> IsReadyAsync(HttpClient client, Uri uri)
    {
        try
        {
            using var response = await client.GetAsync(uri);
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return false;
        }
    }

    public static Uri Https(WorkloadProcess workload, string path) => new UriBuilder(workload.Address) { Scheme = "https", Path = path }.Uri;

    public static Uri Http(WorkloadProcess workload, string path) => new UriBuilder(workload.Address) { Scheme = "http", Path = path }.Uri;

    public static HttpClient CreatePlainClient() =>
        new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = TimeSpan.FromSeconds(10) };
}
