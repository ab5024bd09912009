using System.Formats.Asn1;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.Samples.Processes;

/// <summary>
/// Gets an X.509-SVID from the control plane's CA the way any workload would (bootstrap token + CSR over the
/// secure port) and writes it as the three files of gRPC's file_watcher certificate provider.
/// </summary>
public static class WorkloadCertificates
{
    public sealed record Files(string CertificateChain, string PrivateKey, string RootCertificate, X509Certificate2 Leaf);

    /// <summary>Issues an SVID for <paramref name="serviceAccount"/> (namespace default) into <paramref name="directory"/>.</summary>
    public static async Task<Files> IssueAsync(ControlPlaneProcess controlPlane, string serviceAccount, string directory)
    {
        ArgumentNullException.ThrowIfNull(controlPlane);
        var token = await controlPlane.MintTokenAsync(serviceAccount).ConfigureAwait(false);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256).CreateSigningRequestPem();

        using var root = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(controlPlane.RootCertificate).ConfigureAwait(false));
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, _) => ChainsTo(certificate, root),
            },
        };
        using var channel = GrpcChannel.ForAddress(controlPlane.SecureAddress, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var reply = await new IstioCertificateService.IstioCertificateServiceClient(channel).CreateCertificateAsync(
            new IstioCertificateRequest { Csr = csr, ValidityDuration = 3600 },
            new Metadata { { "authorization", $"Bearer {token}" } }).ResponseAsync.ConfigureAwait(false);

        Directory.CreateDirectory(directory);
        var files = new Files(
            Path.Combine(directory, "cert-chain.pem"),
            Path.Combine(directory, "key.pem"),
            Path.Combine(directory, "root-cert.pem"),
            X509Certificate2.CreateFromPem(reply.CertChain[0]));
        await File.WriteAllTextAsync(files.CertificateChain, string.Concat(reply.CertChain.Take(reply.CertChain.Count - 1))).ConfigureAwait(false);
        await File.WriteAllTextAsync(files.PrivateKey, key.ExportPkcs8PrivateKeyPem() + "\n").ConfigureAwait(false);
        await File.WriteAllTextAsync(files.RootCertificate, reply.CertChain[^1]).ConfigureAwait(false);
        return files;
    }

    /// <summary>
    /// An HttpClient that presents <paramref name="files"/>' SVID and trusts the mesh root: it can call mesh workloads
    /// on their ports even under STRICT mTLS (as https://127.0.0.1:port/; the peer's chain is checked, not its name).
    /// </summary>
    public static HttpClient CreateMtlsClient(Files files, Action<X509Certificate2>? onServerCertificate = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        var root = X509Certificate2.CreateFromPem(File.ReadAllText(files.RootCertificate));
        var identity = X509Certificate2.CreateFromPemFile(files.CertificateChain, files.PrivateKey);
        var chain = new X509Certificate2Collection();
        chain.ImportFromPemFile(files.CertificateChain);
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificateContext = SslStreamCertificateContext.Create(identity, new X509Certificate2Collection(chain.Skip(1).ToArray())),
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    var trusted = ChainsTo(certificate, root);
                    if (trusted && onServerCertificate is not null)
                    {
                        onServerCertificate(new X509Certificate2(certificate!));
                    }

                    return trusted;
                },
            },
        };
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>Gets the SPIFFE ID (the URI SAN) of an X.509-SVID, or null.</summary>
    public static string? SpiffeIdOf(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17")
            {
                continue;
            }

            // GeneralNames ::= SEQUENCE OF GeneralName; uniformResourceIdentifier is [6] IA5String.
            var names = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
            while (names.HasData)
            {
                if (names.PeekTag().HasSameClassAndValue(uriTag))
                {
                    var uri = names.ReadCharacterString(UniversalTagNumber.IA5String, uriTag);
                    if (uri.StartsWith("spiffe://", StringComparison.Ordinal))
                    {
                        return uri;
                    }
                }
                else
                {
                    names.ReadEncodedValue();
                }
            }
        }

        return null;
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
