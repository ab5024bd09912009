using System.Diagnostics.CodeAnalysis;

namespace Mesh.Client.Security;

/// <summary>A parsed SPIFFE ID <c>spiffe://&lt;trust-domain&gt;/&lt;path&gt;</c>; Istio identities have the path <c>ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>.</summary>
internal sealed record SpiffeId(string Value, string TrustDomain, string Path)
{
    private const string Prefix = "spiffe://";

    /// <summary>Gets the namespace of an Istio-shaped ID (<c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>), else null.</summary>
    public string? Namespace => Segments is ["ns", var ns, "sa", _] ? ns : null;

    /// <summary>Gets the service account of an Istio-shaped ID, else null.</summary>
    public string? ServiceAccount => Segments is ["ns", _, "sa", var sa] ? sa : null;

    private string[] Segments => Path.Split('/', StringSplitOptions.RemoveEmptyEntries);

    public static SpiffeId ForWorkload(string trustDomain, string ns, string serviceAccount) =>
        Parse($"{Prefix}{trustDomain}/ns/{ns}/sa/{serviceAccount}");

    public static SpiffeId Parse(string value) =>
        TryParse(value, out var id, out var reason) ? id : throw new FormatException($"'{value}' is not a SPIFFE ID: {reason}");

    /// <summary>Parses by the SPIFFE-ID rules: spiffe scheme, valid trust domain, non-root path of valid segments, nothing else.</summary>
    public static bool TryParse(string? value, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? reason)
    {
        id = null;
        if (string.IsNullOrEmpty(value) || value.Length > 2048)
        {
            reason = "empty or longer than 2048 bytes";
            return false;
        }

        if (!value.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            reason = "the scheme must be spiffe://";
            return false;
        }

        var rest = value.AsSpan(Prefix.Length);
        var slash = rest.IndexOf('/');
        var trustDomain = (slash < 0 ? rest : rest[..slash]).ToString();
        if (!IsValidTrustDomain(trustDomain))
        {
            reason = $"trust domain '{trustDomain}' must be non-empty lowercase letters, digits, '.', '-' or '_' (no port, userinfo, query or fragment)";
            return false;
        }

        if (slash < 0 || slash == rest.Length - 1)
        {
            reason = "the path must not be empty (a workload ID has a non-root path)";
            return false;
        }

        var path = rest[slash..].ToString();
        foreach (var segment in path[1..].Split('/'))
        {
            if (segment.Length == 0 || segment is "." or ".." || !segment.All(IsPathChar))
            {
                reason = $"path segment '{segment}' is empty, '.' or '..' or has characters outside [a-zA-Z0-9.-_]";
                return false;
            }
        }

        id = new SpiffeId($"{Prefix}{trustDomain}{path}", trustDomain, path);
        reason = null;
        return true;
    }

    public static bool IsValidTrustDomain(string? trustDomain) =>
        !string.IsNullOrEmpty(trustDomain) && trustDomain.Length <= 255
        && trustDomain.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_');

    public override string ToString() => Value;

    private static bool IsPathChar(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '.' or '-' or '_';
}
