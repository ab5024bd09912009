using System.Collections.Immutable;
using System.Numerics;
using Mesh.Client.LoadBalancing;

namespace Mesh.Client.Routing;

internal enum HashKeyKind
{
    Header,
    Cookie,
    QueryParameter,

    /// <summary>Envoy's <c>connection_properties.source_ip</c>: the caller's address.</summary>
    SourceIp,
}

/// <summary>One RDS <c>hash_policy</c> entry.</summary>
internal sealed record HashKey(HashKeyKind Kind, string Name, bool Terminal);

/// <summary>
/// A route's <c>hash_policy</c>: the request hash a RING_HASH cluster picks by, computed as Envoy does (each present key's
/// xxHash64 folded in as <c>rotl(h, 1) ^ key</c>, a <c>terminal</c> entry that produced a key ends the list). Reads the
/// request without allocating. A source-IP key is this process's stable key <see cref="SourceKey"/>: a client library is its
/// own source, so, as behind a sidecar that hashes the pod IP, all of this process's requests land on one endpoint.
/// </summary>
internal sealed class RouteHashPolicy
{
    public RouteHashPolicy(ImmutableArray<HashKey> keys, ulong sourceKey)
    {
        Keys = keys.IsDefault ? [] : keys;
        SourceKey = sourceKey;
    }

    public ImmutableArray<HashKey> Keys { get; }

    public ulong SourceKey { get; }

    /// <summary>Computes the request hash; false when no key is present (then the balancer picks at random, as Envoy does).</summary>
    public bool TryHash(HttpRequestMessage request, Uri uri, out ulong hash)
    {
        hash = 0;
        var found = false;
        foreach (var key in Keys)
        {
            if (!TryHashKey(key, request, uri, out var value))
            {
                continue;
            }

            hash = found ? BitOperations.RotateLeft(hash, 1) ^ value : value;
            found = true;
            if (key.Terminal)
            {
                break;
            }
        }

        return found;
    }

    private bool TryHashKey(HashKey key, HttpRequestMessage request, Uri uri, out ulong value)
    {
        switch (key.Kind)
        {
            case HashKeyKind.Header:
                return TryHashHeader(request, key.Name, out value);
            case HashKeyKind.Cookie:
                return TryHashCookie(request, key.Name, out value);
            case HashKeyKind.QueryParameter:
                return TryHashQuery(uri.OriginalString, key.Name, out value);
            default:
                value = SourceKey;
                return true;
        }
    }

    private static bool TryHashHeader(HttpRequestMessage request, string name, out ulong value)
    {
        value = 0;
        if (!request.Headers.NonValidated.TryGetValues(name, out var values) || values.Count == 0)
        {
            return false;
        }

        // Several values: folded in order (Envoy hashes them together); one value hashes exactly as Envoy and gRPC do.
        var first = true;
        foreach (var item in values)
        {
            var h = XxHash64.HashUtf8(item);
            value = first ? h : BitOperations.RotateLeft(value, 1) ^ h;
            first = false;
        }

        return true;
    }

    private static bool TryHashCookie(HttpRequestMessage request, string name, out ulong value)
    {
        value = 0;
        if (!request.Headers.NonValidated.TryGetValues("Cookie", out var values))
        {
            return false;
        }

        foreach (var header in values)
        {
            // "a=1; b=2": the first cookie of that name, its value hashed as Envoy's cookie hash does.
            var rest = header.AsSpan();
            while (!rest.IsEmpty)
            {
                var end = rest.IndexOf(';');
                var pair = (end < 0 ? rest : rest[..end]).Trim();
                rest = end < 0 ? default : rest[(end + 1)..];
                var eq = pair.IndexOf('=');
                if (eq > 0 && pair[..eq].Trim().SequenceEqual(name))
                {
                    var cookie = pair[(eq + 1)..].Trim();
                    if (cookie.Length >= 2 && cookie[0] == '"' && cookie[^1] == '"')
                    {
                        cookie = cookie[1..^1];
                    }

                    value = XxHash64.HashUtf8(cookie);
                    return true;
                }
            }
        }

        return false;
    }

    private static bool TryHashQuery(string uri, string name, out ulong value)
    {
        value = 0;
        var span = uri.AsSpan();
        var question = span.IndexOf('?');
        if (question < 0)
        {
            return false;
        }

        var query = span[(question + 1)..];
        var fragment = query.IndexOf('#');
        if (fragment >= 0)
        {
            query = query[..fragment];
        }

        while (!query.IsEmpty)
        {
            var end = query.IndexOf('&');
            var pair = end < 0 ? query : query[..end];
            query = end < 0 ? default : query[(end + 1)..];
            var eq = pair.IndexOf('=');
            var pairName = eq < 0 ? pair : pair[..eq];
            if (pairName.SequenceEqual(name))
            {
                // The raw (still percent-encoded) value, as Envoy's query_parameter hash reads it.
                value = XxHash64.HashUtf8(eq < 0 ? default : pair[(eq + 1)..]);
                return true;
            }
        }

        return false;
    }
}
