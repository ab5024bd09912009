using System.Collections.Concurrent;

namespace Mesh.Client.Authorization.Jwt;

/// <summary>
/// Envoy's <c>jwt_cache_config</c>: a bounded cache of validated tokens (only valid ones), keyed by the exact token text
/// and looked up by span, so a token seen again costs a dictionary probe and no allocation. An entry lives no longer than
/// its token (exp + clock skew); it belongs to one provider of one snapshot, so new keys start an empty cache.
/// </summary>
internal sealed class JwtTokenCache
{
    public const int DefaultCapacity = 100;

    /// <summary>Envoy's default <c>jwt_max_token_size</c>: longer tokens are verified every time.</summary>
    public const int DefaultMaxTokenLength = 4096;

    private readonly ConcurrentDictionary<string, JwtPrincipal> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, JwtPrincipal>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly int _capacity;
    private readonly int _maxTokenLength;
    private readonly TimeSpan _skew;

    public JwtTokenCache(int capacity, int maxTokenLength, TimeSpan skew)
    {
        _capacity = capacity;
        _maxTokenLength = maxTokenLength;
        _skew = skew;
        _lookup = _entries.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public int Count => _entries.Count;

    public bool TryGet(ReadOnlySpan<char> token, DateTimeOffset now, out JwtPrincipal? principal)
    {
        if (!_lookup.TryGetValue(token, out principal))
        {
            return false;
        }

        if (principal.ExpiresAt is { } expires && now > expires + _skew)
        {
            // Expired since it was cached: verify again (and report "expired").
            _lookup.TryRemove(token, out _, out _);
            principal = null;
            return false;
        }

        return true;
    }

    public void Add(string token, JwtPrincipal principal, DateTimeOffset now)
    {
        if (_capacity <= 0 || token.Length > _maxTokenLength)
        {
            return;
        }

        if (_entries.Count >= _capacity)
        {
            foreach (var (key, value) in _entries)
            {
                if (value.ExpiresAt is { } expires && now > expires + _skew)
                {
                    _entries.TryRemove(key, out _);
                }
            }

            // Still full: drop any one entry (a miss costs one verification, not correctness).
            while (_entries.Count >= _capacity && _entries.Keys.FirstOrDefault() is { } victim)
            {
                _entries.TryRemove(victim, out _);
            }
        }

        _entries[token] = principal;
    }
}
