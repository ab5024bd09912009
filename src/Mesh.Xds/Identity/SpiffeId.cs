using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace Mesh.Xds.Identity;

/// <summary>
/// A SPIFFE ID parsed by the rules of spiffe/spiffe <c>standards/SPIFFE-ID.md</c>, read as strictly as go-spiffe does:
/// the lowercase <c>spiffe://</c> scheme, a trust domain of <c>[a-z0-9._-]</c> (at most 255 bytes, so no port,
/// userinfo or uppercase), a non-root path of non-empty segments of <c>[A-Za-z0-9._-]</c> other than <c>.</c> and
/// <c>..</c> (so no percent-encoding, trailing slash, query or fragment), at most 2048 bytes in all. The client and the
/// control plane both parse with this type; Istio workload IDs (<c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>) carry their parts.
/// </summary>
internal sealed record SpiffeId
{
    /// <summary>The trust domain when none is configured, as in Istio.</summary>
    public const string DefaultTrustDomain = "cluster.local";

    /// <summary>The scheme and separator; SPIFFE-ID.md requires the lowercase spelling.</summary>
    public const string Prefix = "spiffe://";

    /// <summary>The longest SPIFFE ID (SPIFFE-ID.md §2.3); every valid character is ASCII, so chars are bytes.</summary>
    public const int MaxLength = 2048;

    /// <summary>The longest trust domain (SPIFFE-ID.md §2.3, RFC 3986 host).</summary>
    public const int MaxTrustDomainLength = 255;

    private static readonly SearchValues<char> TrustDomainChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789.-_");
    private static readonly SearchValues<char> PathChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");
    private static readonly SearchValues<char> DnsLabelChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-");

    private SpiffeId(string value, string trustDomain, string path, WorkloadIdentity? workload)
    {
        Value = value;
        TrustDomain = trustDomain;
        Path = path;
        Workload = workload;
    }

    /// <summary>Gets the whole ID, e.g. <c>spiffe://cluster.local/ns/default/sa/orders</c>.</summary>
    public string Value { get; }

    public string TrustDomain { get; }

    /// <summary>Gets the path with its leading '/', e.g. <c>/ns/default/sa/orders</c>.</summary>
    public string Path { get; }

    /// <summary>Gets the Istio workload parts when the path is <c>/ns/&lt;dns-label&gt;/sa/&lt;dns-label&gt;</c>, else null.</summary>
    public WorkloadIdentity? Workload { get; }

    /// <summary>Gets the namespace of a workload ID, else null.</summary>
    public string? Namespace => Workload?.Namespace;

    /// <summary>Gets the service account of a workload ID, else null.</summary>
    public string? ServiceAccount => Workload?.ServiceAccount;

    /// <summary>The workload ID <c>spiffe://&lt;td&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>; throws <see cref="FormatException"/> naming the bad part.</summary>
    public static SpiffeId ForWorkload(string trustDomain, string ns, string serviceAccount)
    {
        var value = $"{Prefix}{trustDomain}/ns/{ns}/sa/{serviceAccount}";
        return TryParseWorkload(value, out SpiffeId? id, out var reason) ? id : throw new FormatException($"'{value}' is not a workload SPIFFE ID: {reason}");
    }

    public static SpiffeId Parse(string value) =>
        TryParse(value, out var id, out var reason) ? id : throw new FormatException($"'{value}' is not a SPIFFE ID: {reason}");

    /// <summary>Checks a SPIFFE ID without keeping it; <paramref name="reason"/> says what is wrong.</summary>
    public static bool TryValidate([NotNullWhen(true)] string? value, [NotNullWhen(false)] out string? reason) =>
        TryParse(value, out _, out reason);

    /// <summary>Parses any SPIFFE ID (workload form or not); <paramref name="reason"/> names the rule broken.</summary>
    public static bool TryParse([NotNullWhen(true)] string? value, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? reason)
    {
        id = null;
        if (string.IsNullOrEmpty(value))
        {
            reason = "a SPIFFE ID must not be empty";
            return false;
        }

        if (value.Length > MaxLength)
        {
            reason = $"'{Shorten(value)}' is longer than {MaxLength} bytes";
            return false;
        }

        if (!value.StartsWith(Prefix, StringComparison.Ordinal))
        {
            reason = $"'{value}' must start with {Prefix} (lowercase)";
            return false;
        }

        var rest = value.AsSpan(Prefix.Length);
        var slash = rest.IndexOf('/');
        var trustDomain = slash < 0 ? rest : rest[..slash];
        if (!IsTrustDomain(trustDomain))
        {
            reason = $"'{value}' has an invalid trust domain '{trustDomain}': 1-{MaxTrustDomainLength} lowercase letters, digits, '.', '-' or '_' (no port, user info or uppercase)";
            return false;
        }

        if (slash < 0 || slash == rest.Length - 1)
        {
            reason = $"'{value}' has no path; a workload ID has one, like {Prefix}{trustDomain}/ns/default/sa/orders";
            return false;
        }

        var path = rest[slash..];
        foreach (var range in path[1..].Split('/'))
        {
            var segment = path[1..][range];
            if (segment.Length == 0 || segment is "." or ".." || segment.ContainsAnyExcept(PathChars))
            {
                reason = $"'{value}' has an invalid path segment '{segment}': letters, digits, '.', '-' or '_' only; no empty, '.' or '..' segment, trailing '/', percent-encoding, query or fragment";
                return false;
            }
        }

        id = new SpiffeId(value, trustDomain.ToString(), path.ToString(), ReadWorkload(trustDomain, path));
        reason = null;
        return true;
    }

    /// <summary>Parses an Istio workload ID <c>spiffe://&lt;td&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c> (namespace and service account DNS labels).</summary>
    public static bool TryParseWorkload([NotNullWhen(true)] string? value, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? reason)
    {
        if (!TryParse(value, out id, out reason))
        {
            return false;
        }

        if (id.Workload is null)
        {
            reason = $"'{value}' is not a workload identity of the form {Prefix}<trust-domain>/ns/<namespace>/sa/<service-account> (namespace and service account lowercase DNS labels)";
            id = null;
            return false;
        }

        return true;
    }

    /// <summary>Parses an Istio workload ID; null (with a reason) for anything else.</summary>
    public static WorkloadIdentity? TryParseWorkload(string? value, out string? reason) =>
        TryParseWorkload(value, out SpiffeId? id, out reason) ? id.Workload : null;

    /// <summary>A SPIFFE trust domain: 1-255 of lowercase letters, digits, '.', '-', '_'.</summary>
    public static bool IsTrustDomain([NotNullWhen(true)] string? value) => value is not null && IsTrustDomain(value.AsSpan());

    /// <summary>A DNS-1123 label, as Kubernetes requires for namespaces and (here) service accounts.</summary>
    public static bool IsDnsLabel([NotNullWhen(true)] string? value) => value is not null && IsDnsLabel(value.AsSpan());

    public override string ToString() => Value;

    private static bool IsTrustDomain(ReadOnlySpan<char> value) =>
        value.Length is > 0 and <= MaxTrustDomainLength && !value.ContainsAnyExcept(TrustDomainChars);

    private static bool IsDnsLabel(ReadOnlySpan<char> value) =>
        value.Length is > 0 and <= 63 && !value.ContainsAnyExcept(DnsLabelChars) && value[0] != '-' && value[^1] != '-';

    private static WorkloadIdentity? ReadWorkload(ReadOnlySpan<char> trustDomain, ReadOnlySpan<char> path)
    {
        Span<Range> parts = stackalloc Range[5];
        var segments = path[1..];
        if (segments.Split(parts, '/') != 4)
        {
            return null;
        }

        var ns = segments[parts[1]];
        var sa = segments[parts[3]];
        return segments[parts[0]] is "ns" && segments[parts[2]] is "sa" && IsDnsLabel(ns) && IsDnsLabel(sa)
            ? new WorkloadIdentity(trustDomain.ToString(), ns.ToString(), sa.ToString())
            : null;
    }

    private static string Shorten(string value) => value.Length <= 64 ? value : string.Concat(value.AsSpan(0, 64), "…");
}
