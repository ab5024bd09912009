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
/// The last good keys of each URI are kept in <c>StateDirectory/jwks/&lt;sha256 of the URI&gt;.json</c> and are the
/// URI's keys from the first snapshot after a restart, so a restart while the IdP is down does not turn every valid
/// token into a 401 (they are refreshed as usual; istiod keeps them in memory only, but it rarely restarts alone).
/// </summary>
internal sealed partial class JwksResolver : BackgroundService, IJwksSource
{
    private readonly ConfigStore _store;
    private readonly JwksOptions _options;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly ILogger<JwksResolver> _logger;
    private readonly HttpClient _http;
    private readonly string _directory;
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
        _directory = Path.Combine(Path.GetFullPath(options.StateDirectory), "jwks");
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AllowAutoRedirect = false })
        {
            Timeout = Timeout.InfiniteTimeSpan,
            MaxResponseContentBufferSize = _options.MaxResponseBytes,
        };
        store.Changed += () => _signal.Writer.TryWrite(true);
    }

    /// <summary>Raised (outside any lock) when the keys of some URI changed.</summary>
    public event Action? Changed;

    /// <summary>The URI's keys; the first call for a URI reads its persisted keys (the translator may ask before any fetch).</summary>
    public string? GetJwks(Uri jwksUri) => _entries.GetOrAdd(jwksUri, Load).Jwks;

    /// <summary>Where the last good keys of <paramref name="jwksUri"/> are kept.</summary>
    public string PersistedPath(Uri jwksUri) =>
        Path.Combine(_directory, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(jwksUri.AbsoluteUri))) + ".json");

    /// <summary>Fetches every due URI of the current config once; returns whether any keys changed (tests call it directly).</summary>
    public async Task<bool> RefreshDueAsync(CancellationToken cancellationToken)
    {
        var wanted = _store.Current.Config.RequestAuthentications.SelectMany(p => p.JwtRules).Select(r => r.JwksUri).OfType<Uri>().ToHashSet();
        foreach (var stale in _entries.Keys.Where(uri => !wanted.Contains(uri)))
        {
            // Forget its kept keys too: the state directory stays bounded by the config, and keys of a URI removed
            // long ago never come back if it is configured again.
            if (_entries.TryRemove(stale, out _))
            {
                Forget(stale);
            }
        }

        var changed = false;
        foreach (var uri in wanted)
        {
            var entry = _entries.GetOrAdd(uri, Load);
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
                Persist(uri, body!);
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

    /// <summary>A new entry, due now, with the persisted keys when a usable file exists (a bad one is ignored, with a warning).</summary>
    private Entry Load(Uri uri)
    {
        var path = PersistedPath(uri);
        try
        {
            var file = new FileInfo(path);
            if (!file.Exists)
            {
                return new Entry();
            }

            if (file.Length > _options.MaxResponseBytes)
            {
                LogPersistedIgnored(_logger, uri, path, $"{file.Length} bytes, more than ControlPlane:Jwks:MaxResponseBytes ({_options.MaxResponseBytes})");
                return new Entry();
            }

            var jwks = File.ReadAllText(path);
            if (JwksDocument.Validate(jwks) is { } problem)
            {
                LogPersistedIgnored(_logger, uri, path, "it " + problem);
                return new Entry();
            }

            LogPersistedLoaded(_logger, uri, path);
            return new Entry { Jwks = jwks };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogPersistedIgnored(_logger, uri, path, ex.Message);
            return new Entry();
        }
    }

    /// <summary>Writes the keys atomically (temp file + rename), so a crash mid-write never leaves a half file.</summary>
    private void Persist(Uri uri, string jwks)
    {
        var path = PersistedPath(uri);
        var temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(_directory);
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var stream = new FileStream(temp, options))
            using (var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false)))
            {
                writer.Write(jwks);
                writer.Flush();
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The keys still serve from memory; only a restart during an IdP outage would miss them.
            LogPersistFailed(_logger, uri, path, ex.Message);
            try
            {
                File.Delete(temp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
            }
        }
    }

    private void Forget(Uri uri)
    {
        try
        {
            File.Delete(PersistedPath(uri));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogPersistFailed(_logger, uri, PersistedPath(uri), ex.Message);
        }
    }

    private sealed class Entry
    {
        public string? Jwks { get; set; }

        public DateTimeOffset NextFetch { get; set; } = DateTimeOffset.MinValue;
    }
}
