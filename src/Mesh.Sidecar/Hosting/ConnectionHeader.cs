using Microsoft.AspNetCore.Http;

namespace Mesh.Sidecar.Hosting;

/// <summary>
/// RFC 9110 §7.6.1: a proxy removes every header the incoming <c>Connection</c> header names (they are for this hop
/// only), so a caller cannot use it to strip or smuggle a header past the sidecar.
/// </summary>
internal static class ConnectionHeader
{
    /// <summary>
    /// Removes from <paramref name="outgoing"/> (headers and content headers) each header named in <paramref name="incoming"/>'s
    /// <c>Connection</c> header. <c>Upgrade</c> stays: YARP sets it itself for the upgrades it proxies. Call it before the
    /// sidecar adds its own headers, so none of them can be named away.
    /// </summary>
    public static void RemoveNominatedHeaders(IHeaderDictionary incoming, HttpRequestMessage outgoing)
    {
        ArgumentNullException.ThrowIfNull(incoming);
        ArgumentNullException.ThrowIfNull(outgoing);
        var named = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var value in incoming.Connection)
        {
            named.UnionWith((value ?? string.Empty).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
        }

        named.Remove("Upgrade");
        if (named.Count == 0)
        {
            return;
        }

        // Only names present are removed: HttpHeaders.Remove throws for a name of the other collection or an invalid one,
        // and the names come from the caller.
        Remove(outgoing.Headers, named);
        if (outgoing.Content is { } content)
        {
            Remove(content.Headers, named);
        }
    }

    private static void Remove(System.Net.Http.Headers.HttpHeaders headers, HashSet<string> named)
    {
        foreach (var name in headers.NonValidated.Select(h => h.Key).Where(named.Contains).ToList())
        {
            headers.Remove(name);
        }
    }
}
