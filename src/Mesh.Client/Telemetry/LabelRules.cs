namespace Mesh.Client.Telemetry;

/// <summary>What a metric label value taken from the network or configuration must look like to be kept.</summary>
internal static class LabelRules
{
    /// <summary>The longest SPIFFE ID kept as a label (the SPIFFE spec's URI limit is 2048; ours are far shorter).</summary>
    public const int MaxPrincipalLength = 255;

    /// <summary>A DNS-1123 label: 1–63 of a-z, 0-9 and '-', starting and ending with a letter or digit.</summary>
    public static bool IsDnsLabel(ReadOnlySpan<char> value)
    {
        if (value.Length is 0 or > 63 || value[0] == '-' || value[^1] == '-')
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!char.IsAsciiLetterLower(c) && !char.IsAsciiDigit(c) && c != '-')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// A host as a request names it: DNS labels of letters (any case), digits and '-', joined by '.', at most 253 long, or
    /// an IP literal (IPv6 in brackets or not).
    /// </summary>
    public static bool IsHostName(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.StartsWith('[') && value.EndsWith(']') && value.Length > 2)
        {
            return System.Net.IPAddress.TryParse(value.AsSpan(1, value.Length - 2), out _);
        }

        if (value.Contains(':'))
        {
            return System.Net.IPAddress.TryParse(value, out _);
        }

        if (value.Length is 0 or > 253)
        {
            return false;
        }

        foreach (var range in value.AsSpan().Split('.'))
        {
            var label = value.AsSpan()[range];
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-')
            {
                return false;
            }

            foreach (var c in label)
            {
                if (!char.IsAsciiLetterOrDigit(c) && c != '-')
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>A Kubernetes label value: at most 63 of letters, digits, '-', '_' and '.', starting and ending alphanumeric.</summary>
    public static bool IsLabelValue(ReadOnlySpan<char> value)
    {
        if (value.Length is 0 or > 63 || !char.IsAsciiLetterOrDigit(value[0]) || !char.IsAsciiLetterOrDigit(value[^1]))
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_' or '.'))
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>The <c>source_principal</c> and <c>source_workload_namespace</c> a peer's SPIFFE ID gives, folded when malformed.</summary>
internal static class PeerIdentity
{
    private const string Scheme = "spiffe://";

    /// <summary>
    /// The principal (the whole ID, kept only when it is <c>spiffe://&lt;trust domain&gt;/&lt;segments&gt;</c> of DNS-safe
    /// characters and at most <see cref="LabelRules.MaxPrincipalLength"/> long) and the namespace from its
    /// <c>/ns/&lt;namespace&gt;/</c> segment (a DNS label); each is <c>unknown</c> otherwise.
    /// </summary>
    public static (string Principal, string Namespace) Fold(string? spiffeId)
    {
        const string unknown = IstioRequestMetrics.Unknown;
        if (spiffeId is null || spiffeId.Length > LabelRules.MaxPrincipalLength || !spiffeId.StartsWith(Scheme, StringComparison.Ordinal))
        {
            return (unknown, unknown);
        }

        var rest = spiffeId.AsSpan(Scheme.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0 || !IsTrustDomain(rest[..slash]))
        {
            return (unknown, unknown);
        }

        var path = rest[(slash + 1)..];
        var ns = unknown;
        var previous = ReadOnlySpan<char>.Empty;
        foreach (var range in path.Split('/'))
        {
            var segment = path[range];
            if (!IsSegment(segment))
            {
                return (unknown, unknown);
            }

            if (previous.SequenceEqual("ns") && ns == unknown && LabelRules.IsDnsLabel(segment))
            {
                ns = segment.ToString();
            }

            previous = segment;
        }

        return (spiffeId, ns);
    }

    private static bool IsTrustDomain(ReadOnlySpan<char> value)
    {
        foreach (var c in value)
        {
            if (!char.IsAsciiLetterLower(c) && !char.IsAsciiDigit(c) && c is not ('-' or '.' or '_'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsSegment(ReadOnlySpan<char> value)
    {
        if (value.Length == 0 || value is "." or "..")
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '.' or '_'))
            {
                return false;
            }
        }

        return true;
    }
}
