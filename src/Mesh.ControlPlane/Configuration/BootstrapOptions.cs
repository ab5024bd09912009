using System.Collections.Immutable;
using System.Globalization;

namespace Mesh.ControlPlane.Configuration;

/// <summary>
/// Settings of <c>ControlPlane:Bootstrap</c>: the bootstrap tokens that buy a workload its first certificate.
/// </summary>
internal sealed class BootstrapOptions
{
    /// <summary>The control plane's own identity (its secure-port SVID); always reserved.</summary>
    public const string ControlPlaneIdentity = Mesh.Xds.Identity.ControlPlaneIdentity.Reserved;

    private static readonly string[] KnownKeys = [nameof(ReservedIdentities), nameof(MaxCertificateTtl)];

    /// <summary>
    /// Identities no token may name, as <c>&lt;namespace&gt;/&lt;serviceAccount&gt;</c> or <c>&lt;namespace&gt;/*</c>,
    /// on top of <see cref="ControlPlaneIdentity"/>.
    /// </summary>
    public ImmutableArray<string> ReservedIdentities { get; set; } = [ControlPlaneIdentity];

    /// <summary>The longest life of a certificate bought with a token; renewal with the SVID then gets the normal TTL.</summary>
    public TimeSpan MaxCertificateTtl { get; set; } = TimeSpan.FromHours(1);

    /// <summary>True when <paramref name="ns"/>/<paramref name="serviceAccount"/> is reserved; <paramref name="entry"/> names the matching entry.</summary>
    public bool IsReserved(string ns, string serviceAccount, out string entry)
    {
        foreach (var reserved in ReservedIdentities)
        {
            var slash = reserved.IndexOf('/', StringComparison.Ordinal);
            if (reserved.AsSpan(0, slash).SequenceEqual(ns)
                && (reserved.AsSpan(slash + 1) is "*" || reserved.AsSpan(slash + 1).SequenceEqual(serviceAccount)))
            {
                entry = reserved;
                return true;
            }
        }

        entry = string.Empty;
        return false;
    }

    internal static void Read(IConfigurationSection section, BootstrapOptions options, string prefix, List<string> errors)
    {
        foreach (var child in section.GetChildren())
        {
            if (!KnownKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{prefix}:{child.Key} is not a known setting; known settings are {string.Join(", ", KnownKeys)}");
            }
        }

        options.MaxCertificateTtl = ControlPlaneOptions.ReadDuration(
            section, nameof(MaxCertificateTtl), options.MaxCertificateTtl, TimeSpan.FromMinutes(1), TimeSpan.FromDays(1), errors, prefix);

        var reservedSection = section.GetSection(nameof(ReservedIdentities));
        var key = $"{prefix}:{nameof(ReservedIdentities)}";

        // A list (ReservedIdentities:0=…) or one comma-separated value (handy on a command line or in an environment variable).
        var entries = reservedSection.Value is { } csv
            ? csv.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select((v, i) => (Key: key, Value: (string?)v))
            : reservedSection.GetChildren().Select(c => (Key: $"{key}:{c.Key}", c.Value));
        var reserved = ImmutableArray.CreateBuilder<string>();
        reserved.Add(ControlPlaneIdentity);
        foreach (var (entryKey, value) in entries)
        {
            var slash = value?.IndexOf('/', StringComparison.Ordinal) ?? -1;
            if (value is null || slash < 0
                || !SpiffeId.IsDnsLabel(value[..slash])
                || !(value[(slash + 1)..] == "*" || SpiffeId.IsDnsLabel(value[(slash + 1)..])))
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{entryKey} must be '<namespace>/<serviceAccount>' or '<namespace>/*' with DNS labels, like mesh-system/* (got '{value}')"));
                continue;
            }

            if (!reserved.Contains(value))
            {
                reserved.Add(value);
            }
        }

        options.ReservedIdentities = reserved.ToImmutable();
    }
}
