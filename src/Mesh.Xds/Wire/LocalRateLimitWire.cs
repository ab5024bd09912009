namespace Mesh.Xds.Wire;

/// <summary>
/// How a per-caller local rate limit is spelled on the wire, by the control plane and read by the client: Envoy's
/// <c>envoy.filters.http.local_ratelimit</c> filter whose <c>rate_limits</c> action is a CEL descriptor
/// (<c>envoy.rate_limit_descriptors.expr</c>) naming the caller: the mTLS peer's URI SAN (its SPIFFE ID), or one shared
/// value for every caller without a client certificate. Never a header: a header is whatever the caller says it is.
/// </summary>
internal static class LocalRateLimitWire
{
    public const string FilterName = "envoy.filters.http.local_ratelimit";
    public const string FilterType = XdsWire.TypeUrlPrefix + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
    public const string ExpressionDescriptorExtension = "envoy.rate_limit_descriptors.expr";

    /// <summary>Envoy's type URL of the CEL descriptor (our message is <c>ExprDescriptor</c>, packed and read under this URL by hand).</summary>
    public const string ExpressionDescriptorType = XdsWire.TypeUrlPrefix + "envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor";

    /// <summary>The descriptor key the caller's identity is bucketed under.</summary>
    public const string PeerDescriptorKey = "source.principal";

    /// <summary>The descriptor value of callers without a client certificate (unmeshed, plaintext): they share one bucket.</summary>
    public const string UnauthenticatedPeer = "unauthenticated";

    /// <summary>The CEL text (Envoy attributes) of the caller's key; the client accepts this expression and no other.</summary>
    public const string PeerExpression = "connection.mtls ? connection.uri_san_peer_certificate : \"" + UnauthenticatedPeer + "\"";

    public const string StatPrefix = "http_local_rate_limiter";

    /// <summary>Envoy's default cap on the buckets of one wildcard descriptor (LRU beyond it).</summary>
    public const uint DefaultMaxDynamicDescriptors = 20;
}
