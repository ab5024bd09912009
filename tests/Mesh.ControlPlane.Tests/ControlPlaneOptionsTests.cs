using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests;

public class ControlPlaneOptionsTests
{
    [Fact]
    public void Load_EmptySection_UsesDocumentedDefaults()
    {
        var options = ControlPlaneOptions.Load(Config());

        Assert.Equal("./mesh-config", options.ConfigDirectory);
        Assert.Equal("./.mesh-state", options.StateDirectory);
        Assert.Null(options.XdsAddress);
        Assert.Equal(new Uri("http://127.0.0.1:15014"), options.AdminAddress);
        Assert.Equal(TimeSpan.FromSeconds(10), options.LeaseTtl);
        Assert.Equal(TimeSpan.FromMilliseconds(100), options.DebounceInterval);
        Assert.Equal(new Uri("https://127.0.0.1:15012"), options.SecureAddress);
        Assert.Equal("cluster.local", options.TrustDomain);
        Assert.False(options.PlaintextRegistration);
        Assert.Equal(TimeSpan.FromHours(24), options.Ca.DefaultTtl);
        Assert.Equal(TimeSpan.FromDays(90), options.Ca.MaxTtl);
        Assert.Equal(["mesh-system/mesh-control-plane"], options.Bootstrap.ReservedIdentities.ToArray());
        Assert.Equal(TimeSpan.FromHours(1), options.Bootstrap.MaxCertificateTtl);
        Assert.Equal(new Mesh.ControlPlane.Xds.InboundPathSettings(Mesh.ControlPlane.Xds.PathNormalizationMode.MergeSlashes, RejectEscapedSlashes: true, IgnoreCase: true, IgnoreTrailingSlash: true), options.InboundPaths);
    }

    [Fact]
    public void Load_ReservedIdentities_ListOrCommaSeparated_AddedToTheControlPlanesOwn()
    {
        var list = ControlPlaneOptions.Load(Config(("Bootstrap:ReservedIdentities:0", "kube-system/*"), ("Bootstrap:ReservedIdentities:1", "ops/admin")));
        var csv = ControlPlaneOptions.Load(Config(("Bootstrap:ReservedIdentities", "kube-system/*, ops/admin")));

        Assert.Equal(["mesh-system/mesh-control-plane", "kube-system/*", "ops/admin"], list.Bootstrap.ReservedIdentities.ToArray());
        Assert.Equal(list.Bootstrap.ReservedIdentities.ToArray(), csv.Bootstrap.ReservedIdentities.ToArray());
        Assert.True(list.Bootstrap.IsReserved("kube-system", "anything", out var entry));
        Assert.Equal("kube-system/*", entry);
        Assert.True(list.Bootstrap.IsReserved("mesh-system", "mesh-control-plane", out _));
        Assert.False(list.Bootstrap.IsReserved("mesh-system", "other", out _));
        Assert.False(list.Bootstrap.IsReserved("ops", "admins", out _));
    }

    [Fact]
    public void Load_PathSettings_IstioSpellings()
    {
        var options = ControlPlaneOptions.Load(Config(("PathNormalization", "BASE"), ("PathEscapedSlashes", "KEEP_UNCHANGED"), ("PathIgnoreCase", "false"), ("PathIgnoreTrailingSlash", "false")));

        Assert.Equal(Mesh.ControlPlane.Xds.InboundPathSettings.Istio, options.InboundPaths);
        Assert.Equal(Mesh.ControlPlane.Xds.PathNormalizationMode.DecodeAndMergeSlashes, ControlPlaneOptions.Load(Config(("PathNormalization", "DECODE_AND_MERGE_SLASHES"))).InboundPaths.Normalization);
        Assert.Equal(Mesh.ControlPlane.Xds.PathNormalizationMode.None, ControlPlaneOptions.Load(Config(("PathNormalization", "NONE"))).InboundPaths.Normalization);
    }

    [Theory]
    [InlineData("XdsAddress", "127.0.0.1:15010", "ControlPlane:XdsAddress must be an absolute http URI like http://127.0.0.1:15010")]
    [InlineData("XdsAddress", "https://127.0.0.1:15010", "ControlPlane:XdsAddress must be an absolute http URI")]
    [InlineData("AdminAddress", "http://example.com:15014", "ControlPlane:AdminAddress must be an absolute http URI like http://127.0.0.1:15014")]
    [InlineData("LeaseTtl", "00:00:00.5", "ControlPlane:LeaseTtl must be a TimeSpan")]
    [InlineData("DebounceInterval", "fast", "ControlPlane:DebounceInterval must be a TimeSpan")]
    [InlineData("NodeIdentifier", "x", "ControlPlane:NodeIdentifier is not a known setting")]
    [InlineData("SecureAddress", "http://127.0.0.1:15012", "ControlPlane:SecureAddress must be an absolute https URI like https://127.0.0.1:15012")]
    [InlineData("TrustDomain", "Cluster.Local", "ControlPlane:TrustDomain must be a SPIFFE trust domain")]
    [InlineData("PlaintextRegistration", "yes", "ControlPlane:PlaintextRegistration must be true or false")]
    [InlineData("Ca:CertificateFile", "ca.pem", "ControlPlane:Ca:CertificateFile and ControlPlane:Ca:KeyFile must be set together")]
    [InlineData("Ca:MaxTtl", "1000.00:00:00", "ControlPlane:Ca:MaxTtl must be a TimeSpan")]
    [InlineData("Ca:Bundle", "x", "ControlPlane:Ca:Bundle is not a known setting")]
    [InlineData("Bootstrap:ReservedIdentities:0", "mesh-control-plane", "ControlPlane:Bootstrap:ReservedIdentities:0 must be '<namespace>/<serviceAccount>' or '<namespace>/*'")]
    [InlineData("Bootstrap:ReservedIdentities:0", "Kube-System/*", "ControlPlane:Bootstrap:ReservedIdentities:0 must be '<namespace>/<serviceAccount>'")]
    [InlineData("Bootstrap:ReservedIdentities", "ops/admin,*/x", "ControlPlane:Bootstrap:ReservedIdentities must be '<namespace>/<serviceAccount>' or '<namespace>/*' with DNS labels, like mesh-system/* (got '*/x')")]
    [InlineData("Bootstrap:MaxCertificateTtl", "2.00:00:00", "ControlPlane:Bootstrap:MaxCertificateTtl must be a TimeSpan")]
    [InlineData("Bootstrap:Reusable", "true", "ControlPlane:Bootstrap:Reusable is not a known setting; known settings are ReservedIdentities, MaxCertificateTtl")]
    [InlineData("PathNormalization", "merge_slashes", "ControlPlane:PathNormalization must be one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES (Istio's pathNormalization; got 'merge_slashes')")]
    [InlineData("PathNormalization", "DEFAULT", "ControlPlane:PathNormalization must be one of")]
    [InlineData("PathEscapedSlashes", "UNESCAPE_AND_REDIRECT", "ControlPlane:PathEscapedSlashes must be REJECT_REQUEST")]
    [InlineData("PathIgnoreCase", "no", "ControlPlane:PathIgnoreCase must be true or false")]
    [InlineData("PathIgnoreTrailingSlash", "1", "ControlPlane:PathIgnoreTrailingSlash must be true or false")]
    public void Load_InvalidValue_FailsNamingTheKey(string key, string value, string expected)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config((key, value))));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_EphemeralPorts_AreAccepted()
    {
        var options = ControlPlaneOptions.Load(Config(("XdsAddress", "http://127.0.0.1:0"), ("AdminAddress", "http://localhost:0")));

        Assert.Equal(new Uri("http://127.0.0.1:0"), options.XdsAddress);
        Assert.Equal(System.Net.IPAddress.Loopback, ControlPlaneOptions.BindAddress(options.AdminAddress));
    }

    [Fact]
    public void Load_EmptyXdsAddress_LeavesThePlaintextPortOff()
    {
        var options = ControlPlaneOptions.Load(Config(("XdsAddress", "")));

        Assert.Null(options.XdsAddress);
    }

    [Fact]
    public void Load_PlaintextRegistrationWithoutXdsAddress_FailsNamingBothKeys()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config(("PlaintextRegistration", "true"))));

        Assert.Contains(
            "ControlPlane:PlaintextRegistration is true but ControlPlane:XdsAddress is not set: there is no plaintext port to register on",
            ex.Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void Load_PlaintextRegistrationWithXdsAddress_IsAccepted()
    {
        var options = ControlPlaneOptions.Load(Config(("PlaintextRegistration", "true"), ("XdsAddress", "http://127.0.0.1:15010")));

        Assert.True(options.PlaintextRegistration);
        Assert.Equal(new Uri("http://127.0.0.1:15010"), options.XdsAddress);
    }

    [Fact]
    public void Load_XdsAddressOnTheSecurePort_FailsNamingBothKeys()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config(("XdsAddress", "http://127.0.0.1:15012"))));

        Assert.Contains("ControlPlane:SecureAddress must use a different port than ControlPlane:XdsAddress", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_EscapedSlashesWithDecodeAndMergeSlashes_FailsNamingBothKeys()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config(("PathNormalization", "DECODE_AND_MERGE_SLASHES"), ("PathEscapedSlashes", "KEEP_UNCHANGED"))));

        Assert.Contains("ControlPlane:PathEscapedSlashes ('KEEP_UNCHANGED') cannot be set with ControlPlane:PathNormalization DECODE_AND_MERGE_SLASHES", ex.Message, StringComparison.Ordinal);
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>($"ControlPlane:{v.Key}", v.Value)))
            .Build();
}
