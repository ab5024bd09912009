using System.Collections.Concurrent;
using Google.Protobuf;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;

namespace Mesh.ScaleTest;

/// <summary>The four resource types a proxyless client follows, and what each references.</summary>
internal static class XdsTypes
{
    public const string Listener = "type.googleapis.com/envoy.config.listener.v3.Listener";
    public const string RouteConfiguration = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    public const string Cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    public const string ClusterLoadAssignment = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

    /// <summary>The order a client follows references in: a listener names a route configuration, which names clusters, which name assignments.</summary>
    public static readonly string[] All = [Listener, RouteConfiguration, Cluster, ClusterLoadAssignment];

    public static string Short(string typeUrl) => typeUrl switch
    {
        Listener => "LDS",
        RouteConfiguration => "RDS",
        Cluster => "CDS",
        ClusterLoadAssignment => "EDS",
        _ => typeUrl,
    };
}

/// <summary>
/// One version of one resource as received, decoded once for every client that receives the same bytes: the names it
/// references (route configuration, clusters, assignment) and, for an assignment, its endpoint addresses.
/// </summary>
internal sealed class ResourceVariant(string name, ByteString bytes, string[] references, string[] addresses)
{
    public string Name { get; } = name;

    public ByteString Bytes { get; } = bytes;

    public string[] References { get; } = references;

    public string[] Addresses { get; } = addresses;
}

/// <summary>
/// Decodes each distinct resource once for all simulated clients. Without it the harness would parse every resource of
/// every response for every client (millions at 5,000 services × 1,000 clients) and compete with the control plane for
/// the same two cores; comparing the received bytes with the last variant is a memcmp.
/// </summary>
internal sealed class XdsResourceCatalog
{
    private readonly ConcurrentDictionary<(string Type, string Name), ResourceVariant> _latest = new();

    /// <summary>The shared variant for a resource of <paramref name="typeUrl"/> with these bytes; <paramref name="name"/> read from them when null (SotW).</summary>
    public ResourceVariant Intern(string typeUrl, string? name, ByteString bytes)
    {
        name ??= NameOf(bytes);
        var key = (typeUrl, name);
        if (_latest.TryGetValue(key, out var latest) && latest.Bytes.Span.SequenceEqual(bytes.Span))
        {
            return latest;
        }

        var variant = Decode(typeUrl, latest?.Name ?? name, bytes);
        _latest[key] = variant;
        return variant;
    }

    /// <summary>The name of the assignment (latest variant) that lists <paramref name="address"/>; null when none does.</summary>
    public string? AssignmentWith(string address) =>
        _latest.Where(p => p.Key.Type == XdsTypes.ClusterLoadAssignment && p.Value.Addresses.Contains(address)).Select(p => p.Key.Name).FirstOrDefault();

    /// <summary>How many distinct resources of <paramref name="typeUrl"/> any client received.</summary>
    public int Count(string typeUrl) => _latest.Keys.Count(k => k.Type == typeUrl);

    /// <summary>Field 1 of Listener, RouteConfiguration, Cluster (<c>name</c>) and ClusterLoadAssignment (<c>cluster_name</c>): the resource's name, read without parsing the rest.</summary>
    private static string NameOf(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (tag == WireFormat.MakeTag(1, WireFormat.WireType.LengthDelimited))
            {
                return input.ReadString();
            }

            input.SkipLastField();
        }

        return string.Empty;
    }

    private static ResourceVariant Decode(string typeUrl, string name, ByteString bytes)
    {
        switch (typeUrl)
        {
            case XdsTypes.Listener:
                var listener = Listener.Parser.ParseFrom(bytes);
                var manager = listener.ApiListener?.ApiListener_ is { } api ? HttpConnectionManager.Parser.ParseFrom(api.Value) : null;
                return new ResourceVariant(name, bytes, manager?.Rds?.RouteConfigName is { Length: > 0 } route ? [route] : [], []);
            case XdsTypes.RouteConfiguration:
                var routes = RouteConfiguration.Parser.ParseFrom(bytes);
                var clusters = routes.VirtualHosts.SelectMany(h => h.Routes).Select(r => r.Route_).Where(a => a is not null)
                    .SelectMany(a => a.WeightedClusters is { } weighted ? weighted.Clusters.Select(c => c.Name) : [a.Cluster])
                    .Where(c => c.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
                return new ResourceVariant(name, bytes, clusters, []);
            case XdsTypes.Cluster:
                var cluster = Cluster.Parser.ParseFrom(bytes);
                var assignment = cluster.Type == Cluster.Types.DiscoveryType.Eds
                    ? cluster.EdsClusterConfig?.ServiceName is { Length: > 0 } service ? service : cluster.Name
                    : null;
                return new ResourceVariant(name, bytes, assignment is null ? [] : [assignment], []);
            default:
                var endpoints = ClusterLoadAssignment.Parser.ParseFrom(bytes);
                var addresses = endpoints.Endpoints.SelectMany(l => l.LbEndpoints)
                    .Select(e => e.Endpoint?.Address?.SocketAddress?.Address).OfType<string>().ToArray();
                return new ResourceVariant(name, bytes, [], addresses);
        }
    }
}
