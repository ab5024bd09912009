using System.Globalization;
using Mesh.ControlPlane.Model;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>DestinationRule <c>trafficPolicy.loadBalancer</c>, validated as Istio validates it.</summary>
internal static partial class YamlConfigLoader
{
    /// <summary>Envoy's and gRPC's largest ring (<c>ring_hash_lb_config.maximum_ring_size</c>).</summary>
    internal const ulong MaxRingSize = 8_388_608;

    /// <summary>Istio: a Maglev table size must be a prime below this.</summary>
    internal const ulong MaxMaglevTableSize = 5_000_011;

    /// <summary>The one place <c>localityLbSetting</c> is translated (a subset or port block would replace it per cluster).</summary>
    private const string TopLevelLoadBalancerPath = "spec.trafficPolicy.loadBalancer";

    private static readonly string[] LoadBalancerFields = ["simple", "consistentHash", "localityLbSetting"];
    private static readonly string[] ConsistentHashFields = ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName", "ringHash", "maglev", "minimumRingSize"];
    private static readonly string[] HashKeyFields = ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"];
    private static readonly string[] HttpCookieFields = ["name", "path", "ttl"];

    /// <summary><c>trafficPolicy.loadBalancer</c>; null when unset. <paramref name="consistentHash"/> is set for <c>consistentHash</c>.</summary>
    private static LoadBalancerKind? ParseLoadBalancer(ResourceContext ctx, YamlMappingNode policy, string path, out ConsistentHashModel? consistentHash)
    {
        consistentHash = null;
        var lbNode = ctx.Mapping(Child(policy, "loadBalancer"), policy, path, required: false);
        if (lbNode is null)
        {
            return null;
        }

        RejectUnsupportedFields(ctx, lbNode, path, LoadBalancerFields);
        if (path != TopLevelLoadBalancerPath && Child(lbNode, "localityLbSetting") is { } locality)
        {
            ctx.Error(locality, $"{path}.localityLbSetting", $"is supported only in {TopLevelLoadBalancerPath} yet; set it there");
        }

        var simpleNode = Child(lbNode, "simple");
        var hashNode = Child(lbNode, "consistentHash");
        if (simpleNode is not null && hashNode is not null)
        {
            // One oneof in Istio's API (lb_policy).
            ctx.Error(hashNode, $"{path}.consistentHash", "cannot be set together with simple; set one of them");
            return null;
        }

        if (hashNode is not null)
        {
            consistentHash = ParseConsistentHash(ctx, hashNode, lbNode, $"{path}.consistentHash");
            return consistentHash is null ? null : LoadBalancerKind.ConsistentHash;
        }

        if (simpleNode is null)
        {
            return null;
        }

        var simple = ctx.String(simpleNode, $"{path}.simple");
        switch (simple)
        {
            case "ROUND_ROBIN":
                return LoadBalancerKind.RoundRobin;
            case "UNSPECIFIED" or "LEAST_REQUEST" or "LEAST_CONN":
                // Istio: UNSPECIFIED is the sidecar default, LEAST_REQUEST; LEAST_CONN is its deprecated name.
                return LoadBalancerKind.LeastRequest;
            case "RANDOM":
                return LoadBalancerKind.Random;
            case "PASSTHROUGH":
                ctx.Error(simpleNode, $"{path}.simple", "PASSTHROUGH is not supported: a proxyless client has no original destination to pass through to");
                return null;
            default:
                ctx.Error(simpleNode, $"{path}.simple", $"'{simple}' is not a load balancer; use ROUND_ROBIN, LEAST_REQUEST, RANDOM or consistentHash");
                return null;
        }
    }

    private static ConsistentHashModel? ParseConsistentHash(ResourceContext ctx, YamlNode node, YamlMappingNode parent, string path)
    {
        var hash = ctx.Mapping(node, parent, path, required: true);
        if (hash is null)
        {
            return null;
        }

        var before = ctx.ErrorCount;
        RejectUnsupportedFields(ctx, hash, path, ConsistentHashFields);
        var keys = HashKeyFields.Where(k => Child(hash, k) is not null).ToList();
        if (keys.Count != 1)
        {
            ctx.Error(keys.Count > 1 ? Child(hash, keys[1])! : hash, path, keys.Count == 0
                ? $"needs a hash key: one of {string.Join(", ", HashKeyFields)}"
                : $"sets {string.Join(" and ", keys)}; exactly one hash key is allowed");
            return null;
        }

        var key = keys[0];
        var keyNode = Child(hash, key)!;
        var keyPath = $"{path}.{key}";
        ConsistentHashModel? model = null;
        switch (key)
        {
            case "httpHeaderName" or "httpQueryParameterName":
                var name = ctx.String(keyNode, keyPath);
                if (string.IsNullOrWhiteSpace(name))
                {
                    ctx.Error(keyNode, keyPath, "must not be empty");
                }
                else if (key == "httpHeaderName" && (name.Any(c => c <= ' ' || c >= 127 || c == ':') || name.Length == 0))
                {
                    ctx.Error(keyNode, keyPath, $"'{name}' is not a valid HTTP header name");
                }
                else
                {
                    model = new ConsistentHashModel(key == "httpHeaderName" ? HashKeyKind.Header : HashKeyKind.QueryParameter, key == "httpHeaderName" ? name.ToLowerInvariant() : name);
                }

                break;
            case "useSourceIp":
                var text = ctx.String(keyNode, keyPath);
                if (text is not ("true" or "false"))
                {
                    ctx.Error(keyNode, keyPath, $"must be true or false (got '{text}')");
                }
                else if (text == "false")
                {
                    ctx.Error(keyNode, keyPath, "is false, so there is no hash key; remove consistentHash or choose a key");
                }
                else
                {
                    model = new ConsistentHashModel(HashKeyKind.SourceIp, string.Empty);
                }

                break;
            default:
                model = ParseHttpCookie(ctx, keyNode, hash, keyPath);
                break;
        }

        ulong? ringSize = null;
        ulong? tableSize = null;
        var ringNode = ctx.Mapping(Child(hash, "ringHash"), hash, $"{path}.ringHash", required: false);
        var maglevNode = ctx.Mapping(Child(hash, "maglev"), hash, $"{path}.maglev", required: false);
        var legacyRing = Child(hash, "minimumRingSize");
        if ((ringNode is null ? 0 : 1) + (maglevNode is null ? 0 : 1) + (legacyRing is null ? 0 : 1) > 1)
        {
            ctx.Error(maglevNode ?? ringNode ?? (YamlNode)hash, path, "set only one of ringHash, maglev and minimumRingSize");
        }
        else if (ringNode is not null || legacyRing is not null)
        {
            var sizeNode = legacyRing ?? Child(ringNode!, "minimumRingSize");
            var sizePath = legacyRing is not null ? $"{path}.minimumRingSize" : $"{path}.ringHash.minimumRingSize";
            if (ringNode is not null)
            {
                RejectUnsupportedFields(ctx, ringNode, $"{path}.ringHash", ["minimumRingSize"]);
            }

            if (sizeNode is not null)
            {
                ringSize = ParseSize(ctx, sizeNode, sizePath, MaxRingSize);
            }
        }
        else if (maglevNode is not null)
        {
            RejectUnsupportedFields(ctx, maglevNode, $"{path}.maglev", ["tableSize"]);
            if (Child(maglevNode, "tableSize") is { } tableNode)
            {
                tableSize = ParseSize(ctx, tableNode, $"{path}.maglev.tableSize", MaxMaglevTableSize - 1);
                if (tableSize is { } size && !IsPrime(size))
                {
                    ctx.Error(tableNode, $"{path}.maglev.tableSize", $"{size} is not a prime number (Maglev needs a prime table size, e.g. 65537)");
                    tableSize = null;
                }
            }
            else
            {
                // Envoy's default table size.
                tableSize = 65537;
            }
        }

        return model is null || ctx.ErrorCount != before ? null : model with { MinimumRingSize = ringSize, MaglevTableSize = tableSize };
    }

    private static ConsistentHashModel? ParseHttpCookie(ResourceContext ctx, YamlNode node, YamlMappingNode parent, string path)
    {
        var cookie = ctx.Mapping(node, parent, path, required: true);
        if (cookie is null)
        {
            return null;
        }

        RejectUnsupportedFields(ctx, cookie, path, HttpCookieFields);
        var name = ctx.String(Child(cookie, "name"), $"{path}.name");
        if (string.IsNullOrWhiteSpace(name) || name.Any(c => c <= ' ' || c >= 127 || "()<>@,;:\\\"/[]?={}".Contains(c, StringComparison.Ordinal)))
        {
            ctx.Error(Child(cookie, "name") ?? cookie, $"{path}.name", name is null ? "is required" : $"'{name}' is not a valid cookie name");
            return null;
        }

        TimeSpan? ttl = null;
        if (Child(cookie, "ttl") is { } ttlNode)
        {
            var text = ctx.String(ttlNode, $"{path}.ttl");
            if (text is null || !TryParseDuration(text, out var value))
            {
                ctx.Error(ttlNode, $"{path}.ttl", $"must be a duration such as 0s, 30m or 1h (got '{text}')");
                return null;
            }

            ttl = value;
            if (value > TimeSpan.Zero)
            {
                // Envoy generates the cookie when the request lacks it; a client library cannot answer its own request with a
                // Set-Cookie, so requests without the cookie get a random endpoint (as gRPC treats a cookie hash).
                ctx.Warn(ttlNode, $"{path}.ttl", "is not applied by proxyless clients: they never generate the cookie; a request without it goes to a random endpoint");
            }
        }

        var cookiePath = ctx.String(Child(cookie, "path"), $"{path}.path");
        return new ConsistentHashModel(HashKeyKind.Cookie, name, CookiePath: cookiePath, CookieTtl: ttl);
    }

    private static ulong? ParseSize(ResourceContext ctx, YamlNode node, string path, ulong max)
    {
        var text = ctx.String(node, path);
        if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value == 0 || value > max)
        {
            ctx.Error(node, path, $"must be an integer from 1 to {max.ToString(CultureInfo.InvariantCulture)} (got '{text}')");
            return null;
        }

        return value;
    }

    private static bool IsPrime(ulong value)
    {
        if (value < 2)
        {
            return false;
        }

        for (ulong d = 2; d * d <= value; d++)
        {
            if (value % d == 0)
            {
                return false;
            }
        }

        return true;
    }
}
