namespace Mesh.Xds.Wire;

/// <summary>
/// The one rule for a workload's or client's locality written as <c>region/zone/subzone</c> (Istio's locality label, with
/// '/' instead of '.'), shared by the client option, registrations and WorkloadEntries.
/// </summary>
internal static class LocalityNames
{
    /// <summary>
    /// Whether <paramref name="locality"/> is empty (no locality) or <c>region</c>, <c>region/zone</c> or
    /// <c>region/zone/subzone</c> with no empty part, no '*' and no whitespace or control character; else why not.
    /// </summary>
    public static bool TryValidate(string? locality, out string reason)
    {
        reason = string.Empty;
        if (string.IsNullOrEmpty(locality))
        {
            return true;
        }

        var parts = locality.Split('/');
        if (parts.Length > 3 || Array.Exists(parts, p => p.Length == 0))
        {
            reason = $"'{locality}' must look like region, region/zone or region/zone/subzone (no empty part)";
            return false;
        }

        if (locality.Length > 256 || locality.Any(c => c <= ' ' || c >= 127 || c == '*'))
        {
            reason = $"'{locality}' must be at most 256 printable ASCII characters without spaces or '*'";
            return false;
        }

        return true;
    }

    /// <summary>Splits a valid locality into region, zone and subzone (missing parts are empty).</summary>
    public static (string Region, string Zone, string SubZone) Split(string? locality)
    {
        var parts = (locality ?? string.Empty).Split('/');
        return (parts[0], parts.Length > 1 ? parts[1] : string.Empty, parts.Length > 2 ? parts[2] : string.Empty);
    }
}
