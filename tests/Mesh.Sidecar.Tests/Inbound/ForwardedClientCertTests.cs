using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.Sidecar.Inbound;

namespace Mesh.Sidecar.Tests.Inbound;

public sealed class ForwardedClientCertTests
{
    [Fact]
    public void Format_EnvoyElement_ByHashUri()
    {
        using var peer = Certificate("spiffe://cluster.local/ns/default/sa/frontend");
        var expectedHash = Convert.ToHexStringLower(SHA256.HashData(peer.RawData));

        var value = ForwardedClientCert.Format("spiffe://cluster.local/ns/default/sa/legacy", peer, "spiffe://cluster.local/ns/default/sa/frontend");

        Assert.Equal($"By=spiffe://cluster.local/ns/default/sa/legacy;Hash={expectedHash};URI=spiffe://cluster.local/ns/default/sa/frontend", value);
        Assert.Matches("Hash=[0-9a-f]{64};", value);
    }

    [Fact]
    public void Hash_DiffersPerCertificate()
    {
        using var one = Certificate("spiffe://cluster.local/ns/default/sa/a");
        using var two = Certificate("spiffe://cluster.local/ns/default/sa/a");

        Assert.NotEqual(ForwardedClientCert.Hash(one), ForwardedClientCert.Hash(two));
    }

    [Fact]
    public void Format_ValueWithSeparators_IsQuoted()
    {
        using var peer = Certificate("spiffe://cluster.local/ns/default/sa/a");

        var value = ForwardedClientCert.Format("spiffe://td/x;URI=evil", peer, "spiffe://td/ns/a,b");

        Assert.StartsWith("By=\"spiffe://td/x;URI=evil\";Hash=", value, StringComparison.Ordinal);
        Assert.EndsWith(";URI=\"spiffe://td/ns/a,b\"", value, StringComparison.Ordinal);
    }

    private static X509Certificate2 Certificate(string spiffeId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=test", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        request.CertificateExtensions.Add(san.Build());
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
    }
}
