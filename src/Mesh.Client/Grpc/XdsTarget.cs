using System.Globalization;

namespace Mesh.Client.Grpc;

/// <summary>Reads <c>xds:///service[:port]</c> gRPC targets.</summary>
internal static class XdsTarget
{
    /// <summary>Splits an <c>xds:///service[:port]</c> address into the service name and port (0 when absent).</summary>
    public static (string Host, int Port) Parse(Uri address)
    {
        ArgumentNullException.ThrowIfNull(address);

        // xds:///inventory → path "/inventory"; xds://authority/inventory is accepted too, the authority ignored.
        var target = address.IsAbsoluteUri ? Uri.UnescapeDataString(address.AbsolutePath.TrimStart('/')) : address.OriginalString;
        var colon = target.LastIndexOf(':');
        if (colon > 0 && int.TryParse(target.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535)
        {
            return (target[..colon], port);
        }

        return (target, 0);
    }

    /// <summary>
    /// The <c>http://</c> address whose calls the mesh routes like <c>xds:///</c> ones: <c>xds:///inventory</c> →
    /// <c>http://inventory</c> (the service's default port), <c>xds:///inventory:9090</c> → <c>http://inventory:9090</c>.
    /// The host is also the :authority the server sees, as gRPC's xds resolver sends the target's name.
    /// </summary>
    public static Uri ToHttpAddress(Uri address)
    {
        var (host, port) = Parse(address);
        if (host.Length == 0 || Uri.CheckHostName(host) != UriHostNameType.Dns)
        {
            throw new ArgumentException($"'{address}' does not name a mesh service: use xds:///<service>[:port], e.g. xds:///inventory.", nameof(address));
        }

        return new UriBuilder(Uri.UriSchemeHttp, host, port > 0 ? port : -1).Uri;
    }
}
