using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>Meshes of generated size for the scale tests: <c>svc-i</c> services, each with its own workloads.</summary>
internal static class ScaleModels
{
    /// <summary>
    /// <paramref name="services"/> ServiceEntries (one HTTP port) selecting <paramref name="endpoints"/> WorkloadEntries each
    /// (label <c>app: svc-i</c>), as the generated Istio YAML of the benchmark; <paramref name="moved"/> shifts the first
    /// endpoint's port of service 0 (an endpoint change).
    /// </summary>
    public static ModelSnapshot Mesh(int services, int endpoints, uint moved = 0)
    {
        var entries = ImmutableArray.CreateBuilder<ServiceEntryModel>(services);
        var workloads = ImmutableArray.CreateBuilder<WorkloadInstance>(services * endpoints);
        for (var i = 0; i < services; i++)
        {
            var name = "svc-" + i.ToString(CultureInfo.InvariantCulture);
            var labels = ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal).Add("app", name);
            entries.Add(new ServiceEntryModel("default", name, [$"{name}.default.svc.cluster.local"], [new ServicePort(80, "http", "HTTP", null)], labels, [], "STATIC"));
            for (var e = 0; e < endpoints; e++)
            {
                var address = $"10.{(i >> 8) & 255}.{i & 255}.{e + 1}";
                var port = 8080 + (i == 0 && e == 0 ? moved : 0);
                workloads.Add(new WorkloadInstance("default", $"{name}-{e}", address,
                    ImmutableSortedDictionary.Create<string, uint>(StringComparer.Ordinal).Add("http", port), labels, name, string.Empty, 0, EndpointSources.Static, null));
            }
        }

        return new ModelSnapshot(1, new YamlConfig(entries.ToImmutable(), workloads.ToImmutable(), []), []);
    }

    /// <summary>The CDS/EDS name of service <paramref name="index"/>.</summary>
    public static string ClusterOf(int index) => $"outbound|80||svc-{index.ToString(CultureInfo.InvariantCulture)}.default.svc.cluster.local";
}
