namespace Mesh.LoadTest;

/// <summary>
/// Idle keep-alive connections held open to a proxy: each of <c>count</c> clients (its own connection pool) makes one
/// request and keeps its connection, as idle browsers, pollers and pooled clients leave them.
/// </summary>
internal sealed class IdleConnections : IDisposable
{
    private readonly List<HttpClient> _clients = [];

    private IdleConnections()
    {
    }

    /// <summary>Gets the requests that did not answer 2xx (their connection may not be held).</summary>
    public int Failed { get; private set; }

    public int Count => _clients.Count;

    /// <param name="createClient">Makes a client with its own handler (one connection each); plaintext or mTLS.</param>
    /// <param name="host">The Host header, when the address is not the service's name.</param>
    public static async Task<IdleConnections> OpenAsync(Uri address, string? host, int count, Func<HttpClient> createClient)
    {
        var idle = new IdleConnections();
        const int Parallel = 32;
        for (var first = 0; first < count; first += Parallel)
        {
            var batch = Enumerable.Range(0, Math.Min(Parallel, count - first)).Select(_ => createClient()).ToArray();
            idle._clients.AddRange(batch);
            var answers = await Task.WhenAll(batch.Select(async client =>
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, address);
                    request.Headers.Host = host;
                    using var response = await client.SendAsync(request).ConfigureAwait(false);
                    _ = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
                    return response.IsSuccessStatusCode;
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    return false;
                }
            })).ConfigureAwait(false);
            idle.Failed += answers.Count(ok => !ok);
        }

        return idle;
    }

    /// <summary>A plaintext client that keeps its one connection for minutes.</summary>
    public static HttpClient PlainClient() => new(new SocketsHttpHandler
    {
        UseProxy = false,
        MaxConnectionsPerServer = 1,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
    })
    {
        Timeout = TimeSpan.FromSeconds(30),
    };

    public void Dispose()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        _clients.Clear();
    }
}
