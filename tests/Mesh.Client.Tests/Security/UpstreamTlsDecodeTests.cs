using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Security;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Security;

public sealed class UpstreamTlsDecodeTests
{
    private const string OrdersId = "spiffe://cluster.local/ns/default/sa/orders";

    [Fact]
    public void DecodeAll_IstioUpstreamTlsContext_ExpectedSansOnCluster()
    {
        var errors = new List<string>();

        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(TlsCluster(IstioContext()))], errors);

        Assert.Empty(errors);
        var tls = Assert.IsType<ClusterResource>(Assert.Single(result!).Value).Tls!;
        var matcher = Assert.Single(tls.ExpectedSans);
        Assert.Equal(new StringMatch(StringMatchKind.Exact, OrdersId, false), matcher);
        Assert.True(tls.Matches(OrdersId));
        Assert.False(tls.Matches("spiffe://cluster.local/ns/default/sa/payments"));
    }

    [Fact]
    public void DecodeAll_ValidationContextWithPrefixSuffixContains_AllMatchersKept()
    {
        var validation = new CertificateValidationContext();
        validation.MatchSubjectAltNames.Add(new StringMatcher { Prefix = "spiffe://cluster.local/ns/shop/" });
        validation.MatchSubjectAltNames.Add(new StringMatcher { Suffix = "/sa/orders", IgnoreCase = true });
        validation.MatchSubjectAltNames.Add(new StringMatcher { Contains = "/ns/billing/" });
        var context = new UpstreamTlsContext { CommonTlsContext = new CommonTlsContext { ValidationContext = validation } };
        var errors = new List<string>();

        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(TlsCluster(context))], errors);

        var tls = Assert.IsType<ClusterResource>(Assert.Single(result!).Value).Tls!;
        Assert.Equal([StringMatchKind.Prefix, StringMatchKind.Suffix, StringMatchKind.Contains], tls.ExpectedSans.Select(m => m.Kind));
        Assert.True(tls.Matches("spiffe://cluster.local/ns/shop/sa/x"));
        Assert.True(tls.Matches("spiffe://cluster.local/ns/other/SA/ORDERS"));
        Assert.True(tls.Matches("spiffe://cluster.local/ns/billing/sa/y"));
        Assert.False(tls.Matches("spiffe://cluster.local/ns/other/sa/y"));
    }

    [Fact]
    public void DecodeAll_NoTransportSocket_PlaintextCluster()
    {
        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(Cluster("orders"))], []);

        Assert.Null(Assert.IsType<ClusterResource>(Assert.Single(result!).Value).Tls);
    }

    [Fact]
    public void DecodeAll_VerifyCertificateHash_NackNamesTheField()
    {
        // verify_certificate_hash (2) is not in our proto subset: it arrives as an unknown field.
        var validation = IstioContext().CommonTlsContext.CombinedValidationContext.DefaultValidationContext;
        var bytes = validation.ToByteArray().Concat(UnknownStringField(2, "ab:cd")).ToArray();
        var context = IstioContext();
        context.CommonTlsContext.CombinedValidationContext.DefaultValidationContext = CertificateValidationContext.Parser.ParseFrom(bytes);
        var errors = new List<string>();

        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(TlsCluster(context))], errors);

        Assert.Null(result);
        var error = Assert.Single(errors);
        Assert.Contains("combined_validation_context.default_validation_context", error, StringComparison.Ordinal);
        Assert.Contains("field(s) 2", error, StringComparison.Ordinal);
    }

    [Fact]
    public void DecodeAll_SafeRegexMatcherOrOtherSocket_Nack()
    {
        var matcher = new StringMatcher { SafeRegex = new RegexMatcher { Regex = "spiffe://.*" } };
        var context = IstioContext();
        context.CommonTlsContext.CombinedValidationContext.DefaultValidationContext.MatchSubjectAltNames.Add(matcher);
        var other = Cluster("orders");
        other.TransportSocket = new TransportSocket { Name = "raw", TypedConfig = Any.Pack(new Empty()) };
        var errors = new List<string>();

        XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(TlsCluster(context)), Any.Pack(other)], errors);

        Assert.Equal(2, errors.Count);
        Assert.Contains("match_subject_alt_names[1]", errors[0], StringComparison.Ordinal);
        Assert.Contains("only type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext is supported", errors[1], StringComparison.Ordinal);
    }

    /// <summary>What istiod's grpcgen sends (reference/xds.md §1.5).</summary>
    private static UpstreamTlsContext IstioContext()
    {
        var validation = new CertificateValidationContext
        {
            CaCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = "default", CertificateName = "ROOTCA" },
        };
        validation.MatchSubjectAltNames.Add(new StringMatcher { Exact = OrdersId });
        return new UpstreamTlsContext
        {
            CommonTlsContext = new CommonTlsContext
            {
                TlsCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = "default", CertificateName = "default" },
                TlsCertificateCertificateProviderInstance = new CommonTlsContext.Types.CertificateProviderInstance { InstanceName = "default", CertificateName = "default" },
                CombinedValidationContext = new CommonTlsContext.Types.CombinedCertificateValidationContext
                {
                    DefaultValidationContext = validation,
                    ValidationContextCertificateProviderInstance = new CommonTlsContext.Types.CertificateProviderInstance { InstanceName = "default", CertificateName = "ROOTCA" },
                },
            },
        };
    }

    private static Mesh.Xds.Envoy.Config.Cluster.V3.Cluster TlsCluster(UpstreamTlsContext context)
    {
        var cluster = Cluster("orders");
        cluster.TransportSocket = new TransportSocket { Name = "envoy.transport_sockets.tls", TypedConfig = Any.Pack(context) };
        return cluster;
    }

    private static byte[] UnknownStringField(int number, string value)
    {
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        output.WriteTag(number, WireFormat.WireType.LengthDelimited);
        output.WriteString(value);
        output.Flush();
        return stream.ToArray();
    }
}
