using System.Collections.Immutable;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Tests;

internal static class TestModels
{
    public static WorkloadInstance Workload(
        string address,
        IDictionary<string, uint>? ports = null,
        IDictionary<string, string>? labels = null,
        string ns = "default",
        string locality = "",
        uint weight = 0,
        string source = EndpointSources.Static) =>
        new(ns, $"w-{address}", address,
            (ports ?? new Dictionary<string, uint>()).ToImmutableSortedDictionary(StringComparer.Ordinal),
            (labels ?? new Dictionary<string, string> { ["app"] = "orders" }).ToImmutableSortedDictionary(StringComparer.Ordinal),
            "orders", locality, weight, source, LeaseId: null);

    public static ServiceEntryModel Service(
        string host = "orders.default.svc.cluster.local",
        ServicePort[]? ports = null,
        IDictionary<string, string>? selector = null,
        WorkloadInstance[]? endpoints = null,
        string ns = "default") =>
        new(ns, host.Split('.')[0], [host], [.. ports ?? [new ServicePort(80, "http", "HTTP", null)]],
            selector?.ToImmutableSortedDictionary(StringComparer.Ordinal), [.. endpoints ?? []], "STATIC");

    public static ModelSnapshot Snapshot(
        ServiceEntryModel[] services,
        WorkloadInstance[]? workloads = null,
        DestinationRuleModel[]? rules = null,
        WorkloadInstance[]? registrations = null,
        PeerAuthenticationModel[]? peerAuthentications = null) =>
        new(1, new YamlConfig([.. services], [.. workloads ?? []], [.. rules ?? []]) { PeerAuthentications = [.. peerAuthentications ?? []] }, [.. registrations ?? []]);

    public static PeerAuthenticationModel PeerAuthentication(
        string ns,
        MtlsMode mode,
        IDictionary<string, string>? selector = null,
        IDictionary<uint, MtlsMode>? ports = null,
        string? name = null) =>
        new(ns, name ?? (selector is null ? "default" : string.Join("-", selector.Values)), selector?.ToImmutableSortedDictionary(StringComparer.Ordinal), mode,
            (ports ?? new Dictionary<uint, MtlsMode>()).ToImmutableSortedDictionary(), "peer.yaml", 1);
}
