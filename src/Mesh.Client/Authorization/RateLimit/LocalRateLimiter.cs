using System.Collections.Frozen;
using System.Globalization;
using Google.Protobuf;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Extensions.Common.Ratelimit.V3;
using Mesh.Xds.Envoy.Extensions.RateLimitDescriptors.Expr.V3;
using Mesh.Xds.Wire;
using EnvoyTokenBucket = Mesh.Xds.Envoy.Type.V3.TokenBucket;
using FractionalPercent = Mesh.Xds.Envoy.Type.V3.FractionalPercent;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;
using RuntimeFractionalPercent = Mesh.Xds.Envoy.Config.Route.V3.RuntimeFractionalPercent;

namespace Mesh.Client.Authorization.RateLimit;

/// <summary>Which limit refused a request.</summary>
internal enum RateLimitScope
{
    Total,
    Identity,
    Override,
}

/// <summary>
/// An inbound port's <c>envoy.filters.http.local_ratelimit</c>: the caller's own bucket first (an override naming its
/// SPIFFE ID, else its bucket of the per-identity wildcard; callers without a client certificate share one), then the
/// total (the default token bucket). As in Envoy's filter, a request its caller's bucket refuses takes no token from
/// the total, so one caller flooding past its own limit cannot starve the others.
/// </summary>
internal sealed class LocalRateLimiter
{
    private const int HeaderCacheSize = 4096;
    private static readonly string?[] Numbers = new string?[HeaderCacheSize];

    private readonly TokenBucket? _total;
    private readonly PeerBucketCache? _perPeer;
    private readonly FrozenDictionary<string, TokenBucket> _overrides;
    private readonly bool _alwaysConsumeTotal;

    private LocalRateLimiter(LocalRateLimit config, TokenBucket? total, PeerBucketCache? perPeer, FrozenDictionary<string, TokenBucket> overrides)
    {
        Config = config;
        _total = total;
        _perPeer = perPeer;
        _overrides = overrides;
        _alwaysConsumeTotal = config.AlwaysConsumeDefaultTokenBucket ?? true;
        StatusCode = config.Status is { Code: var code } && (int)code >= 400 ? (int)code : 429;
        HeadersEnabled = config.EnableXRatelimitHeaders == XRateLimitHeadersRFCVersion.DraftVersion03;
        ResourceExhausted = config.RateLimitedAsResourceExhausted;
    }

    /// <summary>Gets the filter config this limiter was built from; an equal config keeps the limiter (and its buckets) across pushes.</summary>
    public LocalRateLimit Config { get; }

    /// <summary>Gets the HTTP status of a refused request (Envoy: 429 unless the config says another code ≥ 400).</summary>
    public int StatusCode { get; }

    /// <summary>Gets whether responses carry <c>X-RateLimit-*</c> (<c>enable_x_ratelimit_headers: DRAFT_VERSION_03</c>).</summary>
    public bool HeadersEnabled { get; }

    /// <summary>Gets whether refused gRPC calls get RESOURCE_EXHAUSTED instead of Envoy's default UNAVAILABLE.</summary>
    public bool ResourceExhausted { get; }

    /// <summary>Gets the per-identity buckets held now (bounded by <c>max_dynamic_descriptors</c>); for tests and diagnostics.</summary>
    public int PeerBucketCount => _perPeer?.Count ?? 0;

    /// <summary>The bucket key of a caller: its SPIFFE ID, or one shared key for callers without a client certificate.</summary>
    public static string PeerKey(string? peerSpiffeId) => peerSpiffeId ?? LocalRateLimitWire.UnauthenticatedPeer;

    /// <summary>Decides for one request and takes its tokens; <paramref name="status"/> is the most restrictive bucket consulted. Allocates nothing for a known caller.</summary>
    public bool TryAcquire(string? peerSpiffeId, out RateLimitStatus status, out RateLimitScope refusedBy)
    {
        var key = PeerKey(peerSpiffeId);
        TokenBucket? own = null;
        var scope = RateLimitScope.Identity;
        if (_overrides.Count > 0 && _overrides.TryGetValue(key, out var overridden))
        {
            own = overridden;
            scope = RateLimitScope.Override;
        }
        else if (_perPeer is not null)
        {
            own = _perPeer.Get(key);
        }

        status = default;
        var consulted = false;
        if (own is not null)
        {
            consulted = true;
            if (!own.TryConsume(out status))
            {
                refusedBy = scope;
                return false;
            }
        }

        refusedBy = RateLimitScope.Total;
        if (_total is not null && (own is null || _alwaysConsumeTotal))
        {
            var allowed = _total.TryConsume(out var totalStatus);
            if (!consulted || !allowed || totalStatus.Remaining < status.Remaining)
            {
                status = totalStatus;
            }

            return allowed;
        }

        return true;
    }

    /// <summary>A header value for a number, cached for small numbers so the allowed path allocates nothing.</summary>
    public static string HeaderValue(uint value)
    {
        if (value >= HeaderCacheSize)
        {
            return value.ToString(CultureInfo.InvariantCulture);
        }

        return Numbers[value] ??= value.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Builds the limiter of a local_ratelimit filter, reporting every field Mesh cannot apply as Envoy would (for the
    /// NACK). Returns null with no errors when the filter is disabled (<c>filter_enabled</c> 0 %, Envoy's default).
    /// </summary>
    public static LocalRateLimiter? Compile(LocalRateLimit config, string path, List<string> errors, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(errors);
        ArgumentNullException.ThrowIfNull(time);
        var before = errors.Count;
        XdsResourceDecoder.RejectUnknownFields(config, path, errors);
        if (config.StatPrefix.Length == 0)
        {
            errors.Add($"{path}.stat_prefix: is required");
        }

        var enabled = Percent(config.FilterEnabled, $"{path}.filter_enabled", errors);
        var enforced = Percent(config.FilterEnforced, $"{path}.filter_enforced", errors);
        if (enabled && !enforced)
        {
            errors.Add($"{path}.filter_enforced: must be 100 % when filter_enabled is (shadow mode is not supported)");
        }

        if (config.LocalRateLimitPerDownstreamConnection)
        {
            errors.Add($"{path}.local_rate_limit_per_downstream_connection: is not supported (buckets are per workload, Envoy's default)");
        }

        if (config.EnableXRatelimitHeaders is not (XRateLimitHeadersRFCVersion.Off or XRateLimitHeadersRFCVersion.DraftVersion03))
        {
            errors.Add($"{path}.enable_x_ratelimit_headers: {config.EnableXRatelimitHeaders} is not a known version; use OFF or DRAFT_VERSION_03");
        }

        var maxPeers = config.MaxDynamicDescriptors ?? LocalRateLimitWire.DefaultMaxDynamicDescriptors;
        if (maxPeers == 0)
        {
            errors.Add($"{path}.max_dynamic_descriptors: must be at least 1");
        }

        var total = config.TokenBucket is null ? null : Bucket(config.TokenBucket, $"{path}.token_bucket", errors, time);
        var peerKey = PeerDescriptorKey(config, path, errors);
        PeerBucketCache? perPeer = null;
        var overrides = new Dictionary<string, TokenBucket>(StringComparer.Ordinal);
        for (var i = 0; i < config.Descriptors.Count; i++)
        {
            var descriptor = config.Descriptors[i];
            var where = $"{path}.descriptors[{i.ToString(CultureInfo.InvariantCulture)}]";
            XdsResourceDecoder.RejectUnknownFields(descriptor, where, errors);
            if (descriptor.ShadowMode)
            {
                errors.Add($"{where}.shadow_mode: is not supported");
            }

            if (descriptor.Entries.Count != 1 || descriptor.Entries[0].Key != (peerKey ?? LocalRateLimitWire.PeerDescriptorKey))
            {
                errors.Add($"{where}.entries: must be exactly one entry with key {peerKey ?? LocalRateLimitWire.PeerDescriptorKey} (the key of the rate_limits action)");
                continue;
            }

            if (descriptor.TokenBucket is null)
            {
                errors.Add($"{where}.token_bucket: is required");
                continue;
            }

            var value = descriptor.Entries[0].Value;
            var bucketPath = $"{where}.token_bucket";
            if (value.Length == 0)
            {
                if (perPeer is not null)
                {
                    errors.Add($"{where}.entries[0].value: a second wildcard descriptor for {peerKey} is not supported");
                }
                else if (Bucket(descriptor.TokenBucket, bucketPath, errors, time) is { } template && maxPeers > 0)
                {
                    perPeer = new PeerBucketCache(template.MaxTokens, template.TokensPerFill, template.FillInterval, (int)Math.Min(maxPeers, int.MaxValue), time);
                }
            }
            else if (overrides.ContainsKey(value))
            {
                errors.Add($"{where}.entries[0].value: {value} has a descriptor already");
            }
            else if (Bucket(descriptor.TokenBucket, bucketPath, errors, time) is { } bucket)
            {
                overrides.Add(value, bucket);
            }
        }

        if (config.Descriptors.Count > 0 && peerKey is null)
        {
            errors.Add($"{path}.rate_limits: descriptors need the rate_limits action that names the caller");
        }

        if (errors.Count > before || !enabled)
        {
            return null;
        }

        return new LocalRateLimiter(config, total, perPeer, overrides.ToFrozenDictionary(StringComparer.Ordinal));
    }

    /// <summary>The key the one supported <c>rate_limits</c> action gives the caller's identity; null when there is none.</summary>
    private static string? PeerDescriptorKey(LocalRateLimit config, string path, List<string> errors)
    {
        if (config.RateLimits.Count == 0)
        {
            return null;
        }

        if (config.RateLimits.Count > 1 || config.RateLimits[0].Actions.Count != 1)
        {
            errors.Add($"{path}.rate_limits: must be one rate limit with one action (the caller's identity)");
            return null;
        }

        var actionPath = $"{path}.rate_limits[0].actions[0]";
        var action = config.RateLimits[0].Actions[0];
        XdsResourceDecoder.RejectUnknownFields(config.RateLimits[0], $"{path}.rate_limits[0]", errors);
        XdsResourceDecoder.RejectUnknownFields(action, actionPath, errors);
        if (action.Extension is not { } extension || !string.Equals(extension.TypedConfig?.TypeUrl, LocalRateLimitWire.ExpressionDescriptorType, StringComparison.Ordinal))
        {
            errors.Add($"{actionPath}: only the extension {LocalRateLimitWire.ExpressionDescriptorExtension} (expr.v3.Descriptor) is supported");
            return null;
        }

        ExprDescriptor expression;
        try
        {
            expression = ExprDescriptor.Parser.ParseFrom(extension.TypedConfig!.Value);
        }
        catch (InvalidProtocolBufferException ex)
        {
            errors.Add($"{actionPath}.extension.typed_config: cannot be decoded: {ex.Message}");
            return null;
        }

        XdsResourceDecoder.RejectUnknownFields(expression, $"{actionPath}.extension.typed_config", errors);
        if (!string.Equals(expression.Text, LocalRateLimitWire.PeerExpression, StringComparison.Ordinal))
        {
            // A client inside the app has no CEL evaluator: it knows this one expression, the caller's mTLS identity.
            errors.Add($"{actionPath}.extension.typed_config.text: only the expression '{LocalRateLimitWire.PeerExpression}' is supported");
            return null;
        }

        if (expression.DescriptorKey.Length == 0)
        {
            errors.Add($"{actionPath}.extension.typed_config.descriptor_key: is required");
            return null;
        }

        return expression.DescriptorKey;
    }

    private static TokenBucket? Bucket(EnvoyTokenBucket bucket, string path, List<string> errors, TimeProvider time)
    {
        var before = errors.Count;
        XdsResourceDecoder.RejectUnknownFields(bucket, path, errors);
        if (bucket.MaxTokens == 0)
        {
            errors.Add($"{path}.max_tokens: must be greater than 0");
        }

        if (bucket.TokensPerFill == 0)
        {
            errors.Add($"{path}.tokens_per_fill: must be greater than 0");
        }

        var interval = bucket.FillInterval?.ToTimeSpan() ?? TimeSpan.Zero;
        if (interval < TimeSpan.FromMilliseconds(50))
        {
            errors.Add($"{path}.fill_interval: is required and must be at least 50ms (Envoy's minimum)");
        }

        return errors.Count > before ? null : new TokenBucket(bucket.MaxTokens, bucket.TokensPerFill ?? 1, interval, time);
    }

    /// <summary>Whether a runtime percentage is 100 % (true) or 0 %/unset (false); anything between is an error (no sampling here).</summary>
    private static bool Percent(RuntimeFractionalPercent? percent, string path, List<string> errors)
    {
        if (percent?.DefaultValue is not { } value || value.Numerator == 0)
        {
            return false;
        }

        var denominator = value.Denominator switch
        {
            FractionalPercent.Types.DenominatorType.Hundred => 100u,
            FractionalPercent.Types.DenominatorType.TenThousand => 10_000u,
            FractionalPercent.Types.DenominatorType.Million => 1_000_000u,
            _ => 0u,
        };
        if (denominator == 0)
        {
            errors.Add($"{path}.default_value.denominator: {value.Denominator} is not a known denominator");
            return false;
        }

        if (value.Numerator < denominator)
        {
            errors.Add($"{path}.default_value: {value.Numerator.ToString(CultureInfo.InvariantCulture)}/{denominator.ToString(CultureInfo.InvariantCulture)} is not supported; use 0 % or 100 %");
            return false;
        }

        return true;
    }
}
