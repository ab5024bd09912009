using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.Xds.Identity;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Extensions.Common.Ratelimit.V3;
using Mesh.Xds.Envoy.Extensions.RateLimitDescriptors.Expr.V3;
using Mesh.Xds.Envoy.Type.V3;
using Mesh.Xds.Wire;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;
using RateLimit = Mesh.Xds.Envoy.Config.Route.V3.RateLimit;
using RuntimeFractionalPercent = Mesh.Xds.Envoy.Config.Route.V3.RuntimeFractionalPercent;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// HTTPLocalRateLimitPolicy → <c>envoy.filters.http.local_ratelimit</c> in the inbound listener: <c>total</c> is the
/// default token bucket; <c>identity</c> a wildcard descriptor on the caller's identity (one bucket per caller, LRU
/// beyond <see cref="MaxCallers"/>); each override identity a descriptor of its own. The caller's identity comes from a
/// CEL descriptor (<see cref="LocalRateLimitWire.PeerExpression"/>: the mTLS peer's URI SAN, one shared key without a
/// client certificate). Enabled and enforced at 100 %, draft-03 <c>X-RateLimit-*</c> headers, and gRPC calls refused
/// with RESOURCE_EXHAUSTED: UNAVAILABLE (Envoy's default) is what gRPC clients and Istio's default retry policy retry,
/// so a limited service would be hit again by every retry.
/// </summary>
internal static class LocalRateLimitTranslator
{
    public const string FilterName = LocalRateLimitWire.FilterName;

    /// <summary>Per-identity buckets one workload keeps (Envoy's max_dynamic_descriptors); more callers evict the least recent.</summary>
    public const uint MaxCallers = 1024;

    public static LocalRateLimit Build(LocalRateLimitPolicyModel policy, string trustDomain)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var config = new LocalRateLimit
        {
            StatPrefix = LocalRateLimitWire.StatPrefix,
            FilterEnabled = Full(),
            FilterEnforced = Full(),
            EnableXRatelimitHeaders = XRateLimitHeadersRFCVersion.DraftVersion03,
            AlwaysConsumeDefaultTokenBucket = true,
            RateLimitedAsResourceExhausted = true,
        };
        if (policy.Total is { } total)
        {
            config.TokenBucket = PerSecond(total);
        }

        if (policy.Identity is not null || policy.Overrides.Length > 0)
        {
            var expression = new ExprDescriptor { DescriptorKey = LocalRateLimitWire.PeerDescriptorKey, Text = LocalRateLimitWire.PeerExpression };
            config.RateLimits.Add(new RateLimit
            {
                Actions =
                {
                    new RateLimit.Types.Action
                    {
                        Extension = new TypedExtensionConfig
                        {
                            Name = LocalRateLimitWire.ExpressionDescriptorExtension,
                            TypedConfig = new Any { TypeUrl = LocalRateLimitWire.ExpressionDescriptorType, Value = expression.ToByteString() },
                        },
                    },
                },
            });
            config.MaxDynamicDescriptors = MaxCallers;
        }

        foreach (var entry in policy.Overrides)
        {
            foreach (var account in entry.ClientRefs)
            {
                config.Descriptors.Add(Descriptor(new WorkloadIdentity(trustDomain, account.Namespace, account.Name).SpiffeId, entry.RequestsPerSecond));
            }
        }

        if (policy.Identity is { } identity)
        {
            // Last: Envoy matches descriptors in order, an exact override before the wildcard.
            config.Descriptors.Add(Descriptor(string.Empty, identity));
        }

        return config;
    }

    private static LocalRateLimitDescriptor Descriptor(string value, uint requestsPerSecond) => new()
    {
        Entries = { new RateLimitDescriptor.Types.Entry { Key = LocalRateLimitWire.PeerDescriptorKey, Value = value } },
        TokenBucket = PerSecond(requestsPerSecond),
    };

    /// <summary>N requests per second: a bucket of N that refills N every second (N may arrive at once, then N per second).</summary>
    private static TokenBucket PerSecond(uint requestsPerSecond) => new()
    {
        MaxTokens = requestsPerSecond,
        TokensPerFill = requestsPerSecond,
        FillInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)),
    };

    private static RuntimeFractionalPercent Full() => new()
    {
        DefaultValue = new FractionalPercent { Numerator = 100, Denominator = FractionalPercent.Types.DenominatorType.Hundred },
    };
}
