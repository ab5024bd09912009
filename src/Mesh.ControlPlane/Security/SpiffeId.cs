using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Security;

/// <summary>A workload identity proven by a credential; the CA certifies exactly this, never names from a CSR.</summary>
internal sealed record WorkloadIdentity(string TrustDomain, string Namespace, string ServiceAccount)
{
    public string SpiffeId => $"spiffe://{TrustDomain}/ns/{Namespace}/sa/{ServiceAccount}";

    public override string ToString() => SpiffeId;
}

/// <summary>SPIFFE ID rules (spiffe/spiffe SPIFFE-ID.md) and Mesh's <c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c> convention.</summary>
internal static class SpiffeId
{
    /// <summary>The trust domain when none is configured, as in Istio.</summary>
    public const string DefaultTrustDomain = "cluster.local";

    private const string Prefix = "spiffe://";

    /// <summary>
    /// The identities a service's workloads may run as: its <c>spec.subjectAltNames</c>, else the
    /// convention <c>spiffe://&lt;td&gt;/ns/&lt;namespace&gt;/sa/&lt;ServiceEntry name&gt;</c>.
    /// </summary>
    public static ImmutableArray<string> AllowedIdentities(ServiceEntryModel service, string trustDomain)
    {
        ArgumentNullException.ThrowIfNull(service);
        return service.SubjectAltNames.IsEmpty
            ? [new WorkloadIdentity(trustDomain, service.Namespace, service.Name).SpiffeId]
            : service.SubjectAltNames;
    }

    /// <summary>Trust domain: lowercase letters, digits, '.', '-', '_'; 1-255 bytes.</summary>
    public static bool IsTrustDomain(string? value) =>
        !string.IsNullOrEmpty(value) && value.Length <= 255 && value.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_');

    /// <summary>A DNS-1123 label, as Kubernetes requires for namespaces and service accounts.</summary>
    public static bool IsDnsLabel(string? value) =>
        !string.IsNullOrEmpty(value) && value.Length <= 63
        && value.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-')
        && value[0] != '-' && value[^1] != '-';

    /// <summary>Checks a SPIFFE ID; returns a reason when it is not valid.</summary>
    public static bool TryValidate([NotNullWhen(true)] string? value, [NotNullWhen(false)] out string? reason)
    {
        reason = null;
        if (string.IsNullOrEmpty(value) || value.Length > 2048)
        {
            reason = "must be a spiffe:// URI of at most 2048 bytes";
            return false;
        }

        if (!value.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            reason = $"'{value}' must start with spiffe://";
            return false;
        }

        var rest = value[Prefix.Length..];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var trustDomain = slash < 0 ? rest : rest[..slash];
        if (!IsTrustDomain(trustDomain))
        {
            reason = $"'{value}' has an invalid trust domain '{trustDomain}' (lowercase letters, digits, '.', '-', '_' only; no port or user info)";
            return false;
        }

        if (slash < 0)
        {
            reason = $"'{value}' has no path; a workload ID needs one, like spiffe://{trustDomain}/ns/default/sa/orders";
            return false;
        }

        var segments = rest[(slash + 1)..].Split('/');
        foreach (var segment in segments)
        {
            if (segment.Length == 0 || segment is "." or ".."
                || !segment.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
            {
                reason = $"'{value}' has an invalid path segment '{segment}' (letters, digits, '.', '-', '_' only; no empty, '.' or '..' segments, no trailing '/', query or fragment)";
                return false;
            }
        }

        return true;
    }

    /// <summary>Parses <c>spiffe://td/ns/x/sa/y</c>; null (with a reason) for anything else.</summary>
    public static WorkloadIdentity? TryParseWorkload(string? value, out string? reason)
    {
        if (!TryValidate(value, out reason))
        {
            return null;
        }

        var rest = value[Prefix.Length..];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var segments = rest[(slash + 1)..].Split('/');
        if (segments.Length != 4 || segments[0] != "ns" || segments[2] != "sa" || !IsDnsLabel(segments[1]) || !IsDnsLabel(segments[3]))
        {
            reason = $"'{value}' is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>";
            return null;
        }

        return new WorkloadIdentity(rest[..slash].ToLowerInvariant(), segments[1], segments[3]);
    }
}
