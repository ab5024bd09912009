using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;

namespace Mesh.Sidecar.Hosting;

/// <summary>
/// Reads <see cref="SidecarOptions"/> from the <c>Sidecar</c> section and reports every problem at once, each naming its
/// key: a typo or a bad value stops the sidecar at start rather than falling back to a default.
/// </summary>
internal static class SidecarOptionsReader
{
    private const string Root = SidecarOptions.SectionName;

    // Sidecar:Tcp belongs to the opaque TCP tunnels, which read and check it themselves.
    private static readonly HashSet<string> Known = new(StringComparer.OrdinalIgnoreCase)
    {
        nameof(SidecarOptions.AppPort),
        nameof(SidecarOptions.AppProtocol),
        nameof(SidecarOptions.InboundPort),
        nameof(SidecarOptions.InboundAddress),
        nameof(SidecarOptions.OutboundPort),
        nameof(SidecarOptions.AdminPort),
        nameof(SidecarOptions.AdminAddress),
        nameof(SidecarOptions.PassthroughNonMeshHosts),
        nameof(SidecarOptions.DrainDuration),
        nameof(SidecarOptions.AppReadyPath),
        nameof(SidecarOptions.InlineIo),
        "Tcp",
    };

    /// <summary>Reads the section; <paramref name="errors"/> gets one message per bad key.</summary>
    public static SidecarOptions Read(IConfiguration configuration, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(errors);
        var section = configuration.GetSection(Root);
        var options = new SidecarOptions();
        foreach (var child in section.GetChildren())
        {
            if (!Known.Contains(child.Key))
            {
                errors.Add($"{Root}:{child.Key} is not a sidecar setting; known keys are {string.Join(", ", Known.Order(StringComparer.Ordinal))}");
            }
        }

        var appPort = section[nameof(SidecarOptions.AppPort)];
        if (string.IsNullOrWhiteSpace(appPort))
        {
            errors.Add($"{Root}:AppPort is required: the port the app listens on at 127.0.0.1 (flag --app-port, environment variable Sidecar__AppPort)");
        }
        else
        {
            options.AppPort = Port(appPort, $"{Root}:AppPort", allowZero: false, errors) ?? 0;
        }

        var protocol = section[nameof(SidecarOptions.AppProtocol)];
        if (protocol is not null)
        {
            switch (protocol.Trim().ToLowerInvariant())
            {
                case "http":
                    options.AppProtocol = SidecarAppProtocol.Http;
                    break;
                case "http2":
                    options.AppProtocol = SidecarAppProtocol.Http2;
                    break;
                default:
                    errors.Add($"{Root}:AppProtocol '{protocol}' must be http (HTTP/1.1 to the app) or http2 (h2c to the app, for gRPC)");
                    break;
            }
        }

        options.InboundPort = OptionalPort(section, nameof(SidecarOptions.InboundPort), options.InboundPort, errors);
        options.OutboundPort = OptionalPort(section, nameof(SidecarOptions.OutboundPort), options.OutboundPort, errors);
        options.AdminPort = OptionalPort(section, nameof(SidecarOptions.AdminPort), options.AdminPort, errors);
        options.InboundAddress = Address(section, nameof(SidecarOptions.InboundAddress), options.InboundAddress, errors);
        options.AdminAddress = Address(section, nameof(SidecarOptions.AdminAddress), options.AdminAddress, errors);

        // Clashes between these ports (and with the TCP tunnels) are SidecarPortCheck's, once the tunnels are read too.
        options.PassthroughNonMeshHosts = Flag(section, nameof(SidecarOptions.PassthroughNonMeshHosts), options.PassthroughNonMeshHosts, errors);
        options.InlineIo = Flag(section, nameof(SidecarOptions.InlineIo), options.InlineIo, errors);

        if (section[nameof(SidecarOptions.DrainDuration)] is { } drain)
        {
            if (TimeSpan.TryParse(drain, CultureInfo.InvariantCulture, out var value) && value >= TimeSpan.Zero && value <= TimeSpan.FromMinutes(10))
            {
                options.DrainDuration = value;
            }
            else
            {
                errors.Add($"{Root}:DrainDuration '{drain}' must be a duration between 00:00:00 and 00:10:00 (e.g. 00:00:05)");
            }
        }

        if (section[nameof(SidecarOptions.AppReadyPath)] is { Length: > 0 } path)
        {
            if (!path.StartsWith('/') || path.StartsWith("//", StringComparison.Ordinal) || path.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            {
                errors.Add($"{Root}:AppReadyPath '{path}' must be an absolute path on the app such as /healthz");
            }
            else
            {
                options.AppReadyPath = path;
            }
        }

        return options;
    }

    private static bool Flag(IConfigurationSection section, string key, bool fallback, List<string> errors)
    {
        if (section[key] is not { } text)
        {
            return fallback;
        }

        if (bool.TryParse(text, out var value))
        {
            return value;
        }

        errors.Add($"{Root}:{key} '{text}' must be true or false");
        return fallback;
    }

    private static int OptionalPort(IConfigurationSection section, string key, int fallback, List<string> errors) =>
        section[key] is { } text ? Port(text, $"{Root}:{key}", allowZero: true, errors) ?? fallback : fallback;

    private static int? Port(string text, string key, bool allowZero, List<string> errors)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= 65535 && (allowZero || port > 0))
        {
            return port;
        }

        errors.Add(allowZero
            ? $"{key} '{text}' must be a port between 0 (any free port) and 65535"
            : $"{key} '{text}' must be a port between 1 and 65535");
        return null;
    }

    private static IPAddress Address(IConfigurationSection section, string key, IPAddress fallback, List<string> errors)
    {
        if (section[key] is not { } text)
        {
            return fallback;
        }

        // IPAddress.TryParse also takes legacy shorthand ("10.1" is 10.0.0.1): an IPv4 address must have its four parts.
        if (IPAddress.TryParse(text, out var address)
            && (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 || text.Count(c => c == '.') == 3))
        {
            return address;
        }

        errors.Add($"{Root}:{key} '{text}' must be an IP address such as 0.0.0.0 or 127.0.0.1");
        return fallback;
    }
}
