using System.Collections.Immutable;

namespace Mesh.ControlPlane.Model;

/// <summary>
/// Istio's <c>Sidecar</c> (<c>networking.istio.io</c>), the part a proxyless client can honour: <c>spec.egress[].hosts</c>
/// scope which services the selected workloads see. Without <see cref="WorkloadSelector"/> it applies to every workload of
/// <see cref="Namespace"/> (and, in the root namespace, to every namespace that has none of its own).
/// </summary>
internal sealed record SidecarModel(
    string Namespace,
    string Name,
    ImmutableSortedDictionary<string, string>? WorkloadSelector,
    ImmutableArray<EgressListenerModel> Egress);

/// <summary>One <c>spec.egress[]</c> entry: its hosts, and the port it is limited to (null: every port).</summary>
internal sealed record EgressListenerModel(uint? Port, ImmutableArray<EgressHostModel> Hosts);

/// <summary>
/// One <c>namespace/dnsName</c> of <c>egress[].hosts</c>. <paramref name="Namespace"/> is a namespace, <c>*</c> (any),
/// <c>~</c> (none) or <c>.</c> (the client's own namespace: for a Sidecar in its own namespace that is the Sidecar's, and a
/// root-namespace default applies <c>./*</c> to each namespace as that namespace, as Istio does). <paramref name="DnsName"/>
/// is an exact FQDN, <c>*</c>, or <c>*.suffix</c>.
/// </summary>
internal sealed record EgressHostModel(string Namespace, string DnsName)
{
    /// <summary>Whether a service <paramref name="host"/> (FQDN) of <paramref name="serviceNamespace"/> is selected for a client of <paramref name="clientNamespace"/>.</summary>
    public bool Matches(string host, string serviceNamespace, string clientNamespace)
    {
        var ns = Namespace == "." ? clientNamespace : Namespace;
        if (ns == "~" || (ns != "*" && !string.Equals(ns, serviceNamespace, StringComparison.Ordinal)))
        {
            return false;
        }

        return DnsName == "*"
            || (DnsName.StartsWith("*.", StringComparison.Ordinal) && host.EndsWith(DnsName[1..], StringComparison.Ordinal))
            || string.Equals(DnsName, host, StringComparison.Ordinal);
    }
}
