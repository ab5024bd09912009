using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// Istio's <c>Sidecar</c>: <c>workloadSelector</c> and <c>egress[].hosts</c>/<c>port</c> scope what the selected clients
/// see. The fields that configure an Envoy proxy's own listeners (<c>ingress</c>, <c>egress[].bind</c>,
/// <c>captureMode</c>, <c>outboundTrafficPolicy</c>, <c>inboundConnectionPool</c>) have nothing to act on in a proxyless
/// client: each is a warning naming the field, never silently dropped.
/// </summary>
internal static partial class YamlConfigLoader
{
    public const string SidecarKind = "Sidecar";

    private static readonly string[] SidecarProxyOnlyFields = ["ingress", "outboundTrafficPolicy", "inboundConnectionPool"];

    private static SidecarModel ParseSidecar(ResourceContext ctx, YamlMappingNode spec, string ns, string name)
    {
        foreach (var key in spec.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is "workloadSelector" or "egress")
            {
                continue;
            }

            if (field is not null && SidecarProxyOnlyFields.Contains(field, StringComparer.Ordinal))
            {
                ctx.Warn(key, $"spec.{field}", "configures a sidecar proxy's own listeners; a proxyless client has none, so it is not applied");
            }
            else
            {
                ctx.Error(key, $"spec.{field}", "is not a field of Sidecar (known: workloadSelector, egress, ingress, outboundTrafficPolicy, inboundConnectionPool)");
            }
        }

        ImmutableSortedDictionary<string, string>? selector = null;
        var selectorNode = ctx.Mapping(Child(spec, "workloadSelector"), spec, "spec.workloadSelector", required: false);
        if (selectorNode is not null)
        {
            selector = ctx.Labels(Child(selectorNode, "labels"), selectorNode, "spec.workloadSelector.labels");
            if (selector.IsEmpty)
            {
                ctx.Error(selectorNode, "spec.workloadSelector.labels", "must contain at least one label (omit workloadSelector to apply to the whole namespace)");
            }
        }

        var egress = ImmutableArray.CreateBuilder<EgressListenerModel>();
        var egressNode = ctx.Sequence(Child(spec, "egress"), spec, "spec.egress", required: true);
        if (egressNode is { Children.Count: 0 })
        {
            ctx.Error(egressNode, "spec.egress", "must list at least one egress listener (an empty scope would hide every service)");
        }

        var portSeen = new HashSet<uint?>();
        for (var i = 0; egressNode is not null && i < egressNode.Children.Count; i++)
        {
            var path = $"spec.egress[{i}]";
            var listener = ctx.Mapping(egressNode.Children[i], egressNode, path, required: true);
            if (listener is null)
            {
                continue;
            }

            var port = ParseEgressPort(ctx, listener, path);
            if (!portSeen.Add(port))
            {
                ctx.Error(listener, path, port is null
                    ? "a second egress listener without a port; Istio allows one catch-all listener per Sidecar"
                    : $"a second egress listener for port {port}");
            }

            egress.Add(new EgressListenerModel(port, ParseEgressHosts(ctx, listener, path, ns)));
        }

        return new SidecarModel(ns, name, selector, egress.ToImmutable());
    }

    private static uint? ParseEgressPort(ResourceContext ctx, YamlMappingNode listener, string path)
    {
        foreach (var key in listener.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is "bind" or "captureMode")
            {
                ctx.Warn(key, $"{path}.{field}", "configures where a sidecar proxy listens; a proxyless client has no listener, so it is not applied");
            }
            else if (field is not ("hosts" or "port"))
            {
                ctx.Error(key, $"{path}.{field}", "is not a field of an egress listener (known: hosts, port, bind, captureMode)");
            }
        }

        var portNode = ctx.Mapping(Child(listener, "port"), listener, $"{path}.port", required: false);
        if (portNode is null)
        {
            return null;
        }

        foreach (var key in portNode.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is not ("number" or "protocol" or "name" or "targetPort"))
            {
                ctx.Error(key, $"{path}.port.{field}", "is not a field of a port (known: number, protocol, name)");
            }
        }

        return ctx.Port(Child(portNode, "number"), portNode, $"{path}.port.number", required: true);
    }

    private static ImmutableArray<EgressHostModel> ParseEgressHosts(ResourceContext ctx, YamlMappingNode listener, string path, string ns)
    {
        var hosts = ImmutableArray.CreateBuilder<EgressHostModel>();
        var hostsNode = ctx.Sequence(Child(listener, "hosts"), listener, $"{path}.hosts", required: true);
        if (hostsNode is { Children.Count: 0 })
        {
            ctx.Error(hostsNode, $"{path}.hosts", "must list at least one namespace/dnsName");
        }

        for (var h = 0; hostsNode is not null && h < hostsNode.Children.Count; h++)
        {
            var hostPath = $"{path}.hosts[{h}]";
            var text = ctx.String(hostsNode.Children[h], hostPath);
            if (text is null)
            {
                if (hostsNode.Children[h] is YamlScalarNode)
                {
                    ctx.Error(hostsNode.Children[h], hostPath, "must be namespace/dnsName");
                }

                continue;
            }

            var slash = text.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0 || slash != text.LastIndexOf('/') || slash == text.Length - 1)
            {
                ctx.Error(hostsNode.Children[h], hostPath, $"'{text}' must be namespace/dnsName (e.g. ./*, istio-system/*, */orders.shop.svc.cluster.local)");
                continue;
            }

            var hostNamespace = text[..slash];
            var dnsName = text[(slash + 1)..].ToLowerInvariant();
            if (hostNamespace is not ("*" or "." or "~") && !IsDnsLabelish(hostNamespace))
            {
                ctx.Error(hostsNode.Children[h], hostPath, $"'{hostNamespace}' must be a namespace, '.', '*' or '~'");
                continue;
            }

            var wildcard = dnsName.StartsWith("*.", StringComparison.Ordinal);
            if (dnsName != "*" && !IsHostName(wildcard ? dnsName[2..] : dnsName))
            {
                ctx.Error(hostsNode.Children[h], hostPath, $"'{dnsName}' must be '*', '*.suffix' or a DNS name");
                continue;
            }

            if (dnsName != "*" && !wildcard && !dnsName.Contains('.', StringComparison.Ordinal))
            {
                ctx.Warn(hostsNode.Children[h], hostPath, $"'{dnsName}' is matched as written, as Istio does: it selects no service whose host is a FQDN such as {dnsName}.{(hostNamespace is "." or "*" or "~" ? ns : hostNamespace)}.svc.cluster.local");
            }

            hosts.Add(new EgressHostModel(hostNamespace, dnsName));
        }

        return hosts.ToImmutable();
    }

    private static void CheckSidecars(List<(SidecarModel Model, string File, int Line)> sidecars, List<ConfigError> errors)
    {
        // Istio leaves two namespace-wide Sidecars in one namespace undefined; a scope that depends on file order is refused.
        var namespaceWide = new Dictionary<string, (SidecarModel Model, string File, int Line)>(StringComparer.Ordinal);
        foreach (var sidecar in sidecars.Where(s => s.Model.WorkloadSelector is null))
        {
            if (!namespaceWide.TryAdd(sidecar.Model.Namespace, sidecar))
            {
                var first = namespaceWide[sidecar.Model.Namespace];
                errors.Add(new ConfigError(sidecar.File, sidecar.Line,
                    $"Sidecar {sidecar.Model.Namespace}/{sidecar.Model.Name}: spec.workloadSelector: namespace {sidecar.Model.Namespace} already has a Sidecar without workloadSelector, {first.Model.Namespace}/{first.Model.Name} ({first.File}:{first.Line}); at most one may apply to the whole namespace",
                    Kind: SidecarKind));
            }
        }
    }
}
