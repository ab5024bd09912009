using System.Collections.Immutable;
using System.Globalization;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Mesh.Sidecar.Tcp;

/// <summary>One outbound tunnel: <c>127.0.0.1:LocalPort</c> carries opaque TCP to port <see cref="Port"/> of mesh service <see cref="Service"/>.</summary>
internal sealed record TcpOutboundTunnel(string Service, int Port, int LocalPort)
{
    public override string ToString() => $"{Service}:{Port.ToString(CultureInfo.InvariantCulture)}";
}

/// <summary>
/// One inbound tunnel: a mesh port (mTLS by PeerAuthentication) registered under the ServiceEntry port name <see cref="Name"/>,
/// relayed to the app's <c>127.0.0.1:AppPort</c>.
/// </summary>
internal sealed record TcpInboundTunnel(string Name, int Port, int AppPort);

/// <summary>
/// The <c>Sidecar:Tcp</c> section: <c>Outbound:&lt;i&gt;:{Service,Port,LocalPort}</c>, <c>Inbound:&lt;i&gt;:{Name,Port,AppPort}</c>
/// and <c>IdleTimeout</c>. Read and validated as a whole when the host is built; every error names its key.
/// </summary>
internal sealed record SidecarTcpOptions(ImmutableArray<TcpOutboundTunnel> Outbound, ImmutableArray<TcpInboundTunnel> Inbound, TimeSpan IdleTimeout)
{
    public const string SectionName = "Sidecar:Tcp";

    /// <summary>Envoy's tcp_proxy default idle timeout (and Istio's <c>tcp.idleTimeout</c>): one hour without a byte either way.</summary>
    public static readonly TimeSpan DefaultIdleTimeout = TimeSpan.FromHours(1);

    private static readonly string[] SectionKeys = ["Outbound", "Inbound", "IdleTimeout"];
    private static readonly string[] OutboundKeys = ["Service", "Port", "LocalPort"];
    private static readonly string[] InboundKeys = ["Name", "Port", "AppPort"];

    /// <summary>Reads the section; throws <see cref="OptionsValidationException"/> listing every error.</summary>
    public static SidecarTcpOptions Read(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var errors = new List<string>();
        var options = Read(configuration, errors);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(SectionName, typeof(SidecarTcpOptions), errors);
        }

        return options;
    }

    /// <summary>Reads the section, adding each problem to <paramref name="errors"/>.</summary>
    public static SidecarTcpOptions Read(IConfiguration configuration, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(errors);
        var section = configuration.GetSection(SectionName);
        UnknownKeys(section, SectionName, SectionKeys, errors);

        var outbound = ImmutableArray.CreateBuilder<TcpOutboundTunnel>();
        foreach (var (key, entry) in Entries(section.GetSection("Outbound"), $"{SectionName}:Outbound", errors))
        {
            UnknownKeys(entry, key, OutboundKeys, errors);
            var service = entry["Service"];
            if (string.IsNullOrEmpty(service))
            {
                errors.Add($"{key}:Service is required (a mesh service host, e.g. orders or orders.default)");
            }
            else if (!IsHost(service))
            {
                errors.Add($"{key}:Service must be a DNS name of lower-case labels (got '{service}')");
                service = null;
            }

            var port = Port(entry, key, "Port", min: 1, errors);
            var local = Port(entry, key, "LocalPort", min: 0, errors);
            if (service is { Length: > 0 } && port is { } p && local is { } l)
            {
                if (outbound.Any(t => t.Service == service && t.Port == p))
                {
                    errors.Add($"{key}: {service}:{p.ToString(CultureInfo.InvariantCulture)} is tunnelled twice");
                }

                outbound.Add(new TcpOutboundTunnel(service, p, l));
            }
        }

        var inbound = ImmutableArray.CreateBuilder<TcpInboundTunnel>();
        foreach (var (key, entry) in Entries(section.GetSection("Inbound"), $"{SectionName}:Inbound", errors))
        {
            UnknownKeys(entry, key, InboundKeys, errors);
            var name = entry["Name"];
            if (string.IsNullOrEmpty(name))
            {
                errors.Add($"{key}:Name is required (the ServiceEntry port's name, e.g. tcp-db)");
            }
            else if (!LabelRules.IsDnsLabel(name))
            {
                errors.Add($"{key}:Name must be a port name: 1-63 of a-z, 0-9 and '-', starting and ending alphanumeric (got '{name}')");
                name = null;
            }
            else if (name is "http" || (name.StartsWith("http-", StringComparison.Ordinal) && int.TryParse(name.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            {
                errors.Add($"{key}:Name '{name}' is the name the registration gives the sidecar's HTTP ports; use the TCP port's own name");
                name = null;
            }

            var port = Port(entry, key, "Port", min: 0, errors);
            var app = Port(entry, key, "AppPort", min: 1, errors);
            if (name is { Length: > 0 } && port is { } p && app is { } a)
            {
                if (inbound.Any(t => t.Name == name))
                {
                    errors.Add($"{key}:Name '{name}' is used by two inbound tunnels");
                }

                inbound.Add(new TcpInboundTunnel(name, p, a));
            }
        }

        var idle = DefaultIdleTimeout;
        if (section["IdleTimeout"] is { } idleText)
        {
            if (!TimeSpan.TryParse(idleText, CultureInfo.InvariantCulture, out idle) || idle < TimeSpan.Zero)
            {
                errors.Add($"{SectionName}:IdleTimeout must be a non-negative time span like 01:00:00 (0 turns it off; got '{idleText}')");
                idle = DefaultIdleTimeout;
            }
        }

        var fixedPorts = outbound.Select(t => (Key: $"outbound {t}", t.LocalPort)).Concat(inbound.Select(t => (Key: $"inbound {t.Name}", t.Port))).Where(p => p.Item2 != 0);
        foreach (var clash in fixedPorts.GroupBy(p => p.Item2).Where(g => g.Count() > 1))
        {
            errors.Add($"{SectionName}: port {clash.Key.ToString(CultureInfo.InvariantCulture)} is the listening port of {string.Join(" and ", clash.Select(c => c.Key))}");
        }

        return new SidecarTcpOptions(outbound.ToImmutable(), inbound.ToImmutable(), idle);
    }

    private static IEnumerable<(string Key, IConfigurationSection Entry)> Entries(IConfigurationSection list, string path, List<string> errors)
    {
        if (list.Value is { Length: > 0 })
        {
            errors.Add($"{path} must be a list of tunnels ({path}:0:…), not a value");
        }

        foreach (var child in list.GetChildren())
        {
            if (!int.TryParse(child.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                errors.Add($"{path}:{child.Key} is not a list index; use {path}:0, {path}:1…");
                continue;
            }

            yield return ($"{path}:{child.Key}", child);
        }
    }

    private static int? Port(IConfigurationSection entry, string key, string name, int min, List<string> errors)
    {
        var text = entry[name];
        if (string.IsNullOrEmpty(text))
        {
            errors.Add($"{key}:{name} is required ({(min == 0 ? "0–65535; 0 picks a free port" : "1–65535")})");
            return null;
        }

        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port < min || port > 65535)
        {
            errors.Add($"{key}:{name} must be a port number {min.ToString(CultureInfo.InvariantCulture)}–65535 (got '{text}')");
            return null;
        }

        return port;
    }

    private static void UnknownKeys(IConfigurationSection section, string path, string[] known, List<string> errors)
    {
        foreach (var child in section.GetChildren())
        {
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{path}:{child.Key} is not a known option; the keys are {string.Join(", ", known)}");
            }
        }
    }

    private static bool IsHost(string value)
    {
        if (value.Length > 253)
        {
            return false;
        }

        foreach (var range in value.AsSpan().Split('.'))
        {
            if (!LabelRules.IsDnsLabel(value.AsSpan()[range]))
            {
                return false;
            }
        }

        return true;
    }
}
