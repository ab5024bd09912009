using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace Mesh.Sidecar.Hosting;

/// <summary>
/// The one check that no two of the sidecar's fixed ports are the same: its own listeners, the app's port and the TCP
/// tunnels' listening ports. Each error names both keys; a clash only among tunnels is the tunnels' reader's to report.
/// </summary>
internal static class SidecarPortCheck
{
    private const string Root = SidecarOptions.SectionName;

    /// <summary>Checks the ports read from <paramref name="configuration"/> after both readers ran.</summary>
    public static void Check(SidecarOptions options, IConfiguration configuration, List<string> errors) =>
        Check(options, TunnelPorts(configuration), errors);

    /// <summary>Adds one error per clash of a non-zero port; ports 0 are ephemeral and never clash.</summary>
    public static void Check(SidecarOptions options, IEnumerable<(string Key, int Port)> tunnelPorts, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tunnelPorts);
        ArgumentNullException.ThrowIfNull(errors);
        var own = new (string Key, int Port)[]
        {
            ($"{Root}:InboundPort", options.InboundPort),
            ($"{Root}:OutboundPort", options.OutboundPort),
            ($"{Root}:AdminPort", options.AdminPort),
            ($"{Root}:AppPort", options.AppPort),
        };
        var ownKeys = own.Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var group in own.Concat(tunnelPorts).Where(p => p.Port > 0).GroupBy(p => p.Port))
        {
            var keys = group.Select(p => p.Key).ToList();
            if (keys.Count < 2 || !keys.Any(ownKeys.Contains))
            {
                continue;
            }

            errors.Add($"{keys[^1]} ({group.Key.ToString(CultureInfo.InvariantCulture)}) is also {string.Join(" and ", keys.Take(keys.Count - 1))}");
        }
    }

    // The tunnels' listening ports under their exact keys; a value that is not a port is the tunnels' reader's error.
    private static IEnumerable<(string Key, int Port)> TunnelPorts(IConfiguration configuration)
    {
        foreach (var (list, name) in new[] { ("Outbound", "LocalPort"), ("Inbound", "Port") })
        {
            var path = $"{Root}:Tcp:{list}";
            foreach (var entry in configuration.GetSection(path).GetChildren())
            {
                if (int.TryParse(entry[name], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535)
                {
                    yield return ($"{path}:{entry.Key}:{name}", port);
                }
            }
        }
    }
}
