using Mesh.Client.Xds;

namespace Mesh.Client.Authorization;

/// <summary>A node of a compiled RBAC permission or principal tree.</summary>
internal abstract class RbacMatcher
{
    public abstract bool Matches(in AuthorizationRequest request);

    /// <summary>Gets whether the tree reads anything only an HTTP request has (a header, the path, a JWT claim).</summary>
    public virtual bool UsesHttp => false;

    /// <summary>
    /// Matches an opaque TCP connection, as Istio's TCP filter chains: HTTP-only conditions are removed (they count as met),
    /// so a DENY rule gets wider. ALLOW rules that use HTTP fields are skipped by <see cref="RbacEngine"/> instead.
    /// </summary>
    public virtual bool MatchesConnection(in AuthorizationRequest request) => Matches(request);
}

internal sealed class AnyMatcher : RbacMatcher
{
    public static AnyMatcher Instance { get; } = new();

    public override bool Matches(in AuthorizationRequest request) => true;
}

internal sealed class AndMatcher(RbacMatcher[] children) : RbacMatcher
{
    public override bool UsesHttp => Array.Exists(children, c => c.UsesHttp);

    public override bool MatchesConnection(in AuthorizationRequest request)
    {
        foreach (var child in children)
        {
            if (!child.MatchesConnection(request))
            {
                return false;
            }
        }

        return true;
    }

    public override bool Matches(in AuthorizationRequest request)
    {
        foreach (var child in children)
        {
            if (!child.Matches(request))
            {
                return false;
            }
        }

        return true;
    }
}

internal sealed class OrMatcher(RbacMatcher[] children) : RbacMatcher
{
    public override bool UsesHttp => Array.Exists(children, c => c.UsesHttp);

    public override bool MatchesConnection(in AuthorizationRequest request)
    {
        foreach (var child in children)
        {
            if (child.MatchesConnection(request))
            {
                return true;
            }
        }

        return false;
    }

    public override bool Matches(in AuthorizationRequest request)
    {
        foreach (var child in children)
        {
            if (child.Matches(request))
            {
                return true;
            }
        }

        return false;
    }
}

internal sealed class NotMatcher(RbacMatcher inner) : RbacMatcher
{
    public override bool Matches(in AuthorizationRequest request) => !inner.Matches(request);

    public override bool UsesHttp => inner.UsesHttp;

    // A negated HTTP condition (notPaths, notMethods…) is removed as a whole, not negated after removal.
    public override bool MatchesConnection(in AuthorizationRequest request) => inner.UsesHttp || !inner.MatchesConnection(request);
}

internal sealed class DestinationPortMatcher(uint port) : RbacMatcher
{
    public override bool Matches(in AuthorizationRequest request) => request.LocalPort == port;
}

internal sealed class UrlPathMatcher(StringMatch match) : RbacMatcher
{
    public override bool Matches(in AuthorizationRequest request) => match.Matches(request.Path);

    public override bool UsesHttp => true;

    public override bool MatchesConnection(in AuthorizationRequest request) => true;
}

/// <summary>Envoy's Authenticated principal: a peer certificate, optionally with a matching SPIFFE ID (URI SAN).</summary>
internal sealed class AuthenticatedMatcher(StringMatch? principalName) : RbacMatcher
{
    public override bool Matches(in AuthorizationRequest request) =>
        request.PeerSpiffeId is { } id && (principalName is null || principalName.Matches(id));
}

/// <summary>
/// Envoy HeaderMatcher: pseudo-headers map to the request; several values are joined with ','; a null
/// <paramref name="match"/> tests presence. Header names are case-insensitive (the dictionary's and the compiled lower case).
/// </summary>
internal sealed class HeaderMatcher(string name, StringMatch? match, bool invert) : RbacMatcher
{
    public override bool UsesHttp => true;

    public override bool MatchesConnection(in AuthorizationRequest request) => true;

    public override bool Matches(in AuthorizationRequest request)
    {
        bool result;
        switch (name)
        {
            case ":method":
                result = Test(request.Method);
                break;
            case ":authority" or "host":
                result = request.Authority is { Length: > 0 } authority ? Test(authority) : Absent();
                break;
            case ":path":
                result = match is null || match.Matches(request.Path);
                break;
            default:
                if (request.Headers is { } headers && headers.TryGetValue(name, out var values) && values.Count > 0)
                {
                    // Several values: Envoy matches the comma-joined value (allocates only in that rare case).
                    result = Test(values.Count == 1 ? values[0] ?? string.Empty : values.ToString());
                }
                else
                {
                    result = Absent();
                }

                break;
        }

        return result != invert;
    }

    private bool Test(ReadOnlySpan<char> value) => match is null || match.Matches(value);

    // A missing header fails every value matcher, and a present_match: true; invert then flips it.
    private static bool Absent() => false;
}
