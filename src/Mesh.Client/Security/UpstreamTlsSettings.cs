using System.Collections.Immutable;
using Mesh.Client.Xds;

namespace Mesh.Client.Security;

/// <summary>
/// A cluster's UpstreamTlsContext as this client honours it: mTLS with the workload SVID, peers validated against the
/// trust bundle, and the peer's SPIFFE ID matched against <see cref="ExpectedSans"/> (Envoy match_subject_alt_names; secure naming). An empty list
/// accepts any SVID of the trust domain.
/// </summary>
internal sealed class UpstreamTlsSettings
{
    public UpstreamTlsSettings(ImmutableArray<StringMatch> expectedSans)
    {
        ExpectedSans = expectedSans.IsDefault ? [] : expectedSans;
        Key = "mtls[" + string.Join(",", ExpectedSans.Select(m => $"{m.Kind}:{m.IgnoreCase}:{m.Value}")) + "]";
    }

    public ImmutableArray<StringMatch> ExpectedSans { get; }

    /// <summary>Gets a string equal for equal settings; part of the connection pool key.</summary>
    public string Key { get; }

    public bool Matches(string spiffeId)
    {
        if (ExpectedSans.IsEmpty)
        {
            return true;
        }

        foreach (var matcher in ExpectedSans)
        {
            if (matcher.Matches(spiffeId))
            {
                return true;
            }
        }

        return false;
    }

    public string Describe() => ExpectedSans.IsEmpty ? "any identity of the trust domain" : string.Join(" or ", ExpectedSans);
}
