using System.Security.Cryptography.X509Certificates;
using Mesh.Client.Security;

namespace Mesh.Client.Tests.Security;

public sealed class SvidValidatorTests : IDisposable
{
    private readonly TestCa _ca = new();

    public void Dispose() => _ca.Dispose();

    [Fact]
    public void TryValidate_ValidLeaf_ReturnsSpiffeId()
    {
        using var leaf = _ca.Issue([TestCa.Id("orders")]);

        var ok = Validate(leaf, out var id, out var error);

        Assert.True(ok, error);
        Assert.Equal(TestCa.Id("orders"), id!.Value);
        Assert.Equal("default", id.Namespace);
        Assert.Equal("orders", id.ServiceAccount);
    }

    [Fact]
    public void TryValidate_ChainThroughIntermediate_Accepted()
    {
        using var ca = new TestCa(intermediate: true);
        using var leaf = ca.Issue([TestCa.Id("orders")]);

        var ok = SvidValidator.TryValidate(leaf, [ca.Intermediate!], ca.Bundle, "cluster.local", DateTimeOffset.UtcNow, out _, out var error);

        Assert.True(ok, error);
    }

    [Fact]
    public void TryValidate_NotBeforeWithinSkew_Accepted()
    {
        using var leaf = _ca.Issue([TestCa.Id("orders")], notBeforeOffset: TimeSpan.FromSeconds(90));

        Assert.True(Validate(leaf, out _, out var error), error);
    }

    public static TheoryData<string, string> BadCertificates => new()
    {
        { "expired", "expired" },
        { "not-yet-valid", "not valid before" },
        { "self-signed", "does not lead to a root" },
        { "foreign-ca", "does not lead to a root" },
        { "other-trust-domain", "trust domain 'evil.local'" },
        { "two-uri-sans", "exactly one URI SAN" },
        { "no-uri-san", "exactly one URI SAN" },
        { "ca-leaf", "CA:true" },
        { "key-cert-sign", "keyCertSign" },
        { "no-digital-signature", "digitalSignature" },
        { "not-spiffe", "not a SPIFFE ID" },
        { "root-path", "not a SPIFFE ID" },
    };

    [Theory]
    [MemberData(nameof(BadCertificates))]
    public void TryValidate_BadPeerCertificate_RefusedWithReason(string kind, string reason)
    {
        using var foreign = new TestCa("foreign");
        using var leaf = BadCertificate(_ca, foreign, kind);

        var ok = Validate(leaf, out _, out var error);

        Assert.False(ok);
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryValidate_NoCertificate_Refused()
    {
        Assert.False(SvidValidator.TryValidate(null, [], _ca.Bundle, "cluster.local", DateTimeOffset.UtcNow, out _, out var error));
        Assert.Contains("no certificate", error, StringComparison.Ordinal);
    }

    internal static X509Certificate2 BadCertificate(TestCa ca, TestCa foreign, string kind) => kind switch
    {
        "expired" => ca.Issue([TestCa.Id("orders")], notBeforeOffset: TimeSpan.FromHours(-3), lifetime: TimeSpan.FromHours(1)),
        "not-yet-valid" => ca.Issue([TestCa.Id("orders")], notBeforeOffset: TimeSpan.FromMinutes(5)),
        "self-signed" => ca.Issue([TestCa.Id("orders")], selfSigned: true),
        "foreign-ca" => foreign.Issue([TestCa.Id("orders")]),
        "other-trust-domain" => ca.Issue([TestCa.Id("orders", trustDomain: "evil.local")]),
        "two-uri-sans" => ca.Issue([TestCa.Id("orders"), TestCa.Id("payments")]),
        "no-uri-san" => ca.Issue([], dnsNames: ["orders"]),
        "ca-leaf" => ca.Issue([TestCa.Id("orders")], isCa: true, usage: X509KeyUsageFlags.DigitalSignature),
        "key-cert-sign" => ca.Issue([TestCa.Id("orders")], usage: X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign),
        "no-digital-signature" => ca.Issue([TestCa.Id("orders")], usage: X509KeyUsageFlags.KeyEncipherment),
        "not-spiffe" => ca.Issue(["https://orders.example/"]),
        "root-path" => ca.Issue(["spiffe://cluster.local"]),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private bool Validate(X509Certificate2 leaf, out SpiffeId? id, out string error) =>
        SvidValidator.TryValidate(leaf, [], _ca.Bundle, "cluster.local", DateTimeOffset.UtcNow, out id, out error);
}
