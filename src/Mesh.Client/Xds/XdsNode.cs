using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using Mesh.Xds.Envoy.Config.Core.V3;

namespace Mesh.Client.Xds;

/// <summary>Builds the xDS <c>Node</c> in Istio's proxyless style, so istiod would accept it too.</summary>
internal static class XdsNode
{
    public const string UserAgentName = "mesh-dotnet";
    public const string NoOverprovisioningFeature = "envoy.lb.does_not_support_overprovisioning";

    public static Node Create(ServiceMeshOptions options, string applicationName, string ip, string suffix)
    {
        ArgumentNullException.ThrowIfNull(options);
        var ns = options.Namespace;
        var workload = ToDnsLabel(options.Service ?? applicationName);
        var node = new Node
        {
            // type~ip~id~domain: istiod reads the namespace from the domain's first label.
            Id = $"sidecar~{ip}~{workload}-{suffix}.{ns}~{ns}.svc.{options.ClusterDomain}",
            // Always present (grpc-js requires it, istiod reads it): locality-aware EDS is computed for this locality.
            Locality = LocalityOf(options),
            UserAgentName = UserAgentName,
            UserAgentVersion = typeof(XdsNode).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                ?? typeof(XdsNode).Assembly.GetName().Version?.ToString() ?? "0.0.0",
            Metadata = new Struct(),
        };
        node.ClientFeatures.Add(NoOverprovisioningFeature);
        node.Metadata.Fields["NAMESPACE"] = Value.ForString(ns);
        node.Metadata.Fields["GENERATOR"] = Value.ForString("grpc");
        if ((options.ServiceAccount ?? options.Service) is { Length: > 0 } account)
        {
            node.Metadata.Fields["SERVICE_ACCOUNT"] = Value.ForString(account);
        }

        var labels = new Struct();
        foreach (var (key, value) in WorkloadLabels(options))
        {
            labels.Fields[key] = Value.ForString(value);
        }

        node.Metadata.Fields["LABELS"] = Value.ForStruct(labels);
        return node;
    }

    /// <summary>Gets <c>Mesh:Locality</c> as an xDS locality (empty when unset).</summary>
    public static Locality LocalityOf(ServiceMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var (region, zone, subZone) = Mesh.Xds.Wire.LocalityNames.Split(options.Locality);
        return new Locality { Region = region, Zone = zone, SubZone = subZone };
    }

    /// <summary>
    /// Gets <c>Mesh:Labels</c> plus <c>app=&lt;Service&gt;</c> when absent, and <c>service.istio.io/workload-name</c> when
    /// <c>Mesh:Telemetry:Workload</c> is set: the control plane names the registered endpoint by it in the telemetry
    /// metadata callers read, so callers report the workload this app reports for itself.
    /// </summary>
    public static Dictionary<string, string> WorkloadLabels(ServiceMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var labels = new Dictionary<string, string>(options.Labels, StringComparer.Ordinal);
        if (options.Service is { Length: > 0 } service)
        {
            labels.TryAdd("app", service);
        }

        if (options.Telemetry.Workload is { Length: > 0 } workload && Telemetry.LabelRules.IsLabelValue(workload))
        {
            labels.TryAdd(Mesh.Xds.Wire.EndpointWorkloadMetadata.WorkloadNameLabel, workload);
        }

        return labels;
    }

    /// <summary>Gets this host's first non-loopback IPv4 address, else 127.0.0.1.</summary>
    public static string LocalIp()
    {
        try
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                if (nic.OperationalStatus != OperationalStatus.Up || nic.NetworkInterfaceType == NetworkInterfaceType.Loopback)
                {
                    continue;
                }

                foreach (var address in nic.GetIPProperties().UnicastAddresses)
                {
                    if (address.Address.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(address.Address))
                    {
                        return address.Address.ToString();
                    }
                }
            }
        }
        catch (NetworkInformationException)
        {
            // Some sandboxes forbid interface enumeration; the loopback address is still a valid node id part.
        }

        return IPAddress.Loopback.ToString();
    }

    private static string ToDnsLabel(string name)
    {
        var builder = new StringBuilder(name.Length);
        foreach (var c in name.ToLowerInvariant())
        {
            builder.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        }

        var label = builder.ToString().Trim('-');
        return label.Length == 0 ? "app" : label[..Math.Min(label.Length, 40)];
    }
}
