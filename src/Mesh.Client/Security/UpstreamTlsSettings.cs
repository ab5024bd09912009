using System.Collections.Immutable;

namespace Mesh.Client.Security;

internal enum SanMatchKind
{
    Exact,
    Prefix,
    Suffix,
    Contains,
}

/// <summary>One Envoy StringMatcher of <c>match_subject_alt_names</c>, applied to the peer's SPIFFE ID.</summary>
internal sealed record SanMatcher(SanMatchKind Kind, string Value, bool IgnoreCase)
{
    public bool Matches(string san)
    {
        var comparison = IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return Kind switch
        {
            SanMatchKind.Exact => string.Equals(san, Value, comparison),
            SanMatchKind.Prefix => san.StartsWith(Value, comparison),
            SanMatchKind.Suffix => san.EndsWith(Value, comparison),
            _ => san.Contains(Value, comparison),
        };
    }

    public override string ToString() => Kind == SanMatchKind.Exact ? Value : $"{Kind.ToString().ToLowerInvariant()}:{Value}{(IgnoreCase ? " (ignore case)" : string.Empty)}";
}

/// <summary>
/// A cluster's UpstreamTlsContext as this client honours it: mTLS with the workload SVID, peers validated against the
/// trust bundle, and the peer's SPIFFE ID matched against <see cref="ExpectedSans"/> (secure naming). An empty list
/// accepts any SVID of the trust domain.
/// </summary>
internal sealed class UpstreamTlsSettings
{
    public UpstreamTlsSettings(ImmutableArray<SanMatcher> expectedSans)
    {
        ExpectedSans = expectedSans.IsDefault ? [] : expectedSans;
        Key = "mtls[" + string.Join(",", ExpectedSans.Select(m => $"{m.Kind}:{m.IgnoreCase}:{m.Value}")) + "]";
    }

    public ImmutableArray<SanMatcher> ExpectedSans { get; }

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
