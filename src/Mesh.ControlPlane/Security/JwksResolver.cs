using System.Collections.Concurrent;
using System.Threading.Channels;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// Fetches the <c>jwksUri</c> of every RequestAuthentication and keeps its keys for the translator to inline (istiod's
/// JwksResolver): a new URI is fetched at once, a good one refreshed every <see cref="JwksOptions.RefreshInterval"/>
/// (±10% jitter), a failing one retried every <see cref="JwksOptions.RetryInterval"/>. A failure keeps the last good
/// keys; a URI that never had good keys gets none (<see cref="GetJwks"/> returns null), so every token fails with 401
/// while requests without a token still pass. A change of keys raises <see cref="Changed"/> (a push).
/// </summary>
internal sealed partial class JwksResolver : BackgroundService, IJwksSource
{
    private readonly ConfigStore _store;
    private readonly JwksOptions _options;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly ILogger<JwksResolver> _logger;
    private readonly HttpClient _http;
    private readonly ConcurrentDictionary<Uri, Entry> _entries = new();
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public JwksResolver(ConfigStore store, ControlPlaneOptions options, TimeProvider time, ILogger<JwksResolver> logger, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _options = options.Jwks;
        _time = time;
        _logger = logger;
        _random = random ?? Random.Shared;
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AllowAutoRedirect = false })
        {
            Timeout = Timeout.InfiniteTimeSpan,
            MaxResponseContentBufferSize = _options.MaxResponseBytes,
        };
        store.Changed += () => _signal.Writer.TryWrite(true);
    }

    /// <summary>Raised (outside any lock) when the keys of some URI changed.</summary>
    public event Action? Changed;

    public string? GetJwks(Uri jwksUri) => _entries.TryGetValue(jwksUri, out var entry) ? entry.Jwks : null;

    /// <summary>Fetches every due URI of the current config once; returns whether any keys changed (tests call it directly).</summary>
    public async Task<bool> RefreshDueAsync(CancellationToken cancellationToken)
    {
        var wanted = _store.Current.Config.RequestAuthentications.SelectMany(p => p.JwtRules).Select(r => r.JwksUri).OfType<Uri>().ToHashSet();
        foreach (var stale in _entries.Keys.Where(uri => !wanted.Contains(uri)))
        {
            _entries.TryRemove(stale, out _);
        }

        var changed = false;
        foreach (var uri in wanted)
        {
            var entry = _entries.GetOrAdd(uri, _ => new Entry());
            if (entry.NextFetch <= _time.GetUtcNow())
            {
                changed |= await FetchAsync(uri, entry, cancellationToken).ConfigureAwait(false);
            }
        }

        if (changed)
        {
            Changed?.Invoke();
        }

        return changed;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                _signal.Reader.TryRead(out _);
                await RefreshDueAsync(stoppingToken).ConfigureAwait(false);
                var next = _entries.Values.Select(e => e.NextFetch).DefaultIfEmpty(DateTimeOffset.MaxValue).Min();
                var delay = next == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : next - _time.GetUtcNow();
                if (delay > TimeSpan.Zero || delay == Timeout.InfiniteTimeSpan)
                {
                    using var wake = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    var timer = delay == Timeout.InfiniteTimeSpan ? Task.Delay(Timeout.Infinite, wake.Token) : Task.Delay(delay, _time, wake.Token);
                    await Task.WhenAny(timer, _signal.Reader.WaitToReadAsync(wake.Token).AsTask()).ConfigureAwait(false);
                    await wake.CancelAsync().ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    private async Task<bool> FetchAsync(Uri uri, Entry entry, CancellationToken cancellationToken)
    {
        string? problem;
        string? body = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.FetchTimeout);
        try
        {
            using var response = await _http.GetAsync(uri, HttpCompletionOption.ResponseContentRead, timeout.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                problem = $"HTTP {(int)response.StatusCode}";
            }
            else
            {
                body = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
                problem = JwksDocument.Validate(body) is { } invalid ? "the response " + invalid : null;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            problem = $"no answer within {_options.FetchTimeout.TotalSeconds:0.###} s (ControlPlane:Jwks:FetchTimeout)";
        }
        catch (HttpRequestException ex)
        {
            // MaxResponseContentBufferSize turns an oversized body into this exception too.
            problem = ex.Message;
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException or IOException)
        {
            // Never let one URI stop the loop (a dead loop would freeze every other issuer's keys).
            problem = $"{ex.GetType().Name}: {ex.Message}";
        }

        var now = _time.GetUtcNow();
        if (problem is null)
        {
            var jitter = _options.RefreshInterval * ((_random.NextDouble() * 0.2) - 0.1);
            entry.NextFetch = now + _options.RefreshInterval + jitter;
            var changed = !string.Equals(entry.Jwks, body, StringComparison.Ordinal);
            entry.Jwks = body;
            if (changed)
            {
                LogFetched(_logger, uri);
            }

            return changed;
        }

        entry.NextFetch = now + _options.RetryInterval;
        if (entry.Jwks is null)
        {
            LogFailedNoKeys(_logger, uri, problem, _options.RetryInterval);
        }
        else
        {
            LogFailedKeepingKeys(_logger, uri, problem, _options.RetryInterval);
        }

        return false;
    }

    private sealed class Entry
    {
        public string? Jwks { get; set; }

        public DateTimeOffset NextFetch { get; set; } = DateTimeOffset.MinValue;
    }
}
