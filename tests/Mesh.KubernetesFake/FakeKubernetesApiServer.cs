using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.KubernetesFake;

/// <summary>
/// A Kubernetes API server for tests, on loopback Kestrel (HTTPS, HTTP/1.1 and HTTP/2, port 0), speaking the real wire
/// protocol: discovery, get/list/create/update/patch/delete with resourceVersion conflicts, watch streams with bookmarks
/// and 410 Expired, TokenReview; plus fault injection (drop or silence watches, go down, come back on the same port) and
/// a request log with awaitable helpers so tests never sleep.
/// </summary>
public sealed partial class FakeKubernetesApiServer : IAsyncDisposable
{
    private readonly FakeKubernetesApiServerOptions _options;
    private readonly FakeCertificates _certificates = new();
    private readonly ObjectStore _store;
    private readonly List<FakeApiRequest> _requests = [];
    private readonly ConcurrentDictionary<Watcher, HttpContext> _openWatches = new();
    private readonly ConcurrentDictionary<string, ServiceAccountToken> _tokens = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _signalGate = new();
    private TaskCompletionSource _signal = NewSignal();
    private TaskCompletionSource _unsilenced = NewSignal();
    private volatile bool _silenced;
    private volatile bool _unavailable;
    private volatile int _tokenReviewFailureCode;
    private volatile Func<FakeApiRequest, FakeKubernetesStatusException?>? _requestFault;
    private WebApplication? _app;
    private Task? _bookmarks;
    private string _tempDirectory = "";

    private FakeKubernetesApiServer(FakeKubernetesApiServerOptions options)
    {
        _options = options;
        _store = new ObjectStore(options.TimeProvider);
        _store.Changed += Notify;
        _unsilenced.TrySetResult();
        Token = options.Token ?? Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24)).ToLowerInvariant();
    }

    /// <summary>https://127.0.0.1:port</summary>
    public Uri Url { get; private set; } = null!;

    /// <summary>The TCP port (kept across <see cref="GoDownAsync"/> / <see cref="ComeBackAsync"/>).</summary>
    public int Port { get; private set; }

    /// <summary>The kubeconfig file (in a temp directory deleted on dispose): this server, its CA, the bearer token.</summary>
    public string KubeconfigPath { get; private set; } = "";

    /// <summary>The bearer token every API request must carry.</summary>
    public string Token { get; }

    /// <summary>PEM of the CA that signed the server certificate (what an in-cluster ca.crt would hold).</summary>
    public string CertificateAuthorityPem => _certificates.AuthorityPem;

    /// <summary>The current (last written) resourceVersion.</summary>
    public long ResourceVersion => _store.ResourceVersion;

    /// <summary>The compaction point: watches from an older resourceVersion get 410 Expired.</summary>
    public long CompactedResourceVersion => _store.CompactedAt;

    /// <summary>True between <see cref="GoDownAsync"/> and <see cref="ComeBackAsync"/>.</summary>
    public bool IsDown { get; private set; }

    /// <summary>Every request received so far, in arrival order.</summary>
    public IReadOnlyList<FakeApiRequest> Requests
    {
        get
        {
            lock (_requests)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>How many requests were received so far (the <c>after</c> of <see cref="WaitForRequestAsync"/> for "from now on").</summary>
    public int RequestCount
    {
        get
        {
            lock (_requests)
            {
                return _requests.Count;
            }
        }
    }

    /// <summary>Starts the server on 127.0.0.1 with a new port and writes its kubeconfig.</summary>
    public static async Task<FakeKubernetesApiServer> StartAsync(FakeKubernetesApiServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        var server = new FakeKubernetesApiServer(options ?? new FakeKubernetesApiServerOptions());
        try
        {
            await server.StartListenerAsync(0, cancellationToken).ConfigureAwait(false);
            server.WriteKubeconfig();
            server._bookmarks = server.RunBookmarksAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    // ---- objects (direct access for seeding and assertions; every change is a real event on the watches) ----

    /// <summary>Creates the object, or replaces it whatever its resourceVersion (test seeding). Returns the stored object.</summary>
    public JsonObject Apply(JsonObject obj) => _store.Upsert(TypeOf(obj), obj);

    /// <summary>Creates the object (409 AlreadyExists as <see cref="FakeKubernetesStatusException"/> when it exists).</summary>
    public JsonObject Create(JsonObject obj)
    {
        var type = TypeOf(obj);
        return _store.Create(type, type.Namespaced ? KubeJson.NamespaceOf(obj) ?? _options.DefaultNamespace : null, obj);
    }

    /// <summary>Replaces the object as a PUT would: 409 Conflict when its metadata.resourceVersion is set and stale.</summary>
    public JsonObject Update(JsonObject obj)
    {
        var type = TypeOf(obj);
        return _store.Update(type, type.Namespaced ? KubeJson.NamespaceOf(obj) ?? _options.DefaultNamespace : null, KubeJson.NameOf(obj), obj);
    }

    /// <summary>Deletes an object (404 as <see cref="FakeKubernetesStatusException"/>); watches see DELETED with its last state.</summary>
    public JsonObject Delete(string apiVersion, string kind, string? ns, string name) =>
        _store.Delete(TypeOf(apiVersion, kind), ns, name, preconditionResourceVersion: null);

    /// <summary>
    /// Starts a graceful deletion as the real server does for a pod: sets metadata.deletionTimestamp (now + grace) and
    /// deletionGracePeriodSeconds, a MODIFIED event; the object stays until <see cref="Delete"/>.
    /// </summary>
    public JsonObject MarkDeleting(string apiVersion, string kind, string? ns, string name, int gracePeriodSeconds = 30)
    {
        var when = _options.TimeProvider.GetUtcNow().AddSeconds(gracePeriodSeconds).UtcDateTime;
        var patch = new JsonObject
        {
            ["metadata"] = new JsonObject
            {
                ["deletionTimestamp"] = when.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                ["deletionGracePeriodSeconds"] = gracePeriodSeconds,
            },
        };
        return _store.Patch(TypeOf(apiVersion, kind), ns, name, patch);
    }

    /// <summary>The stored object, or null.</summary>
    public JsonObject? TryGet(string apiVersion, string kind, string? ns, string name)
    {
        try
        {
            return _store.Get(TypeOf(apiVersion, kind), ns, name);
        }
        catch (FakeKubernetesStatusException e) when (e.Code == 404)
        {
            return null;
        }
    }

    /// <summary>The stored objects of a kind (in one namespace, or all when null), ordered by namespace/name.</summary>
    public IReadOnlyList<JsonObject> List(string apiVersion, string kind, string? ns = null) =>
        _store.List(TypeOf(apiVersion, kind), ns, null, null).Items;

    /// <summary>Moves the compaction point to now: watches (and Exact lists) from any older resourceVersion get 410 Expired.</summary>
    public void Compact() => _store.Compact();

    // ---- TokenReview ----

    /// <summary>
    /// Registers a ServiceAccount token: a TokenReview of it authenticates system:serviceaccount:ns:sa when its audiences
    /// intersect the review's (or the API server's own when the review names none); pod-name goes into user.extra.
    /// </summary>
    /// <param name="token">The token text a client presents.</param>
    /// <param name="ns">The service account's namespace.</param>
    /// <param name="serviceAccount">The service account's name.</param>
    /// <param name="audiences">The token's audiences (aud claim).</param>
    /// <param name="podName">The pod the token is bound to (user.extra pod-name / pod-uid), or null.</param>
    /// <param name="expiresAt">From then on (by the options' TimeProvider) reviews answer unauthenticated, "token has expired"; null = never.</param>
    public void AddServiceAccountToken(string token, string ns, string serviceAccount, IReadOnlyList<string> audiences, string? podName = null, DateTimeOffset? expiresAt = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentException.ThrowIfNullOrEmpty(ns);
        ArgumentException.ThrowIfNullOrEmpty(serviceAccount);
        ArgumentNullException.ThrowIfNull(audiences);
        _tokens[token] = new ServiceAccountToken(ns, serviceAccount, [.. audiences], podName, Guid.NewGuid().ToString(), podName is null ? null : Guid.NewGuid().ToString(), expiresAt);
    }

    /// <summary>Forgets a token (revoked / expired): reviews of it answer unauthenticated. Returns whether it was known.</summary>
    public bool RemoveServiceAccountToken(string token) => _tokens.TryRemove(token, out _);

    /// <summary>Makes every TokenReview fail with this HTTP status (a Status object, e.g. 500 InternalError); null restores.</summary>
    public void FailTokenReviews(int? statusCode) => _tokenReviewFailureCode = statusCode ?? 0;

    // ---- faults ----

    /// <summary>
    /// Answers requests with a Status of your choice: <paramref name="fault"/> sees each authenticated request (after it is
    /// logged) and returns the failure to send (e.g. <see cref="FakeKubernetesStatusException.Forbidden"/>, a 500, a 429) or
    /// null to serve it normally. Null removes the fault.
    /// </summary>
    public void SetRequestFault(Func<FakeApiRequest, FakeKubernetesStatusException?>? fault) => _requestFault = fault;

    /// <summary>Aborts every open watch connection abruptly (HTTP/2: stream reset; HTTP/1.1: connection closed mid-chunk).</summary>
    public int DropWatches() => EndWatches(abort: true);

    /// <summary>Ends every open watch cleanly (the response completes), as the real server does at a watch's timeout.</summary>
    public int CloseWatches() => EndWatches(abort: false);

    /// <summary>
    /// While true, watches stay open but send nothing (no events, no bookmarks); events that happen meanwhile are held and
    /// delivered when silence ends (bookmarks are not). New watches are silent too. Lists and gets keep working.
    /// </summary>
    public void SilenceWatches(bool silent)
    {
        lock (_signalGate)
        {
            if (silent == _silenced)
            {
                return;
            }
            _silenced = silent;
            if (silent)
            {
                _unsilenced = NewSignal();
            }
            else
            {
                _unsilenced.TrySetResult();
            }
        }
    }

    /// <summary>
    /// Makes the API server unavailable. <see cref="FakeApiServerOutage.Refuse"/> (default): the listener stops, open
    /// connections are aborted, new ones refused. <see cref="FakeApiServerOutage.Unavailable"/>: every request gets 503.
    /// </summary>
    public async Task GoDownAsync(FakeApiServerOutage outage = FakeApiServerOutage.Refuse)
    {
        if (IsDown)
        {
            throw new InvalidOperationException("The fake API server is already down.");
        }
        IsDown = true;
        if (outage == FakeApiServerOutage.Unavailable)
        {
            _unavailable = true;
            DropWatches();
            return;
        }
        DropWatches();
        var app = _app;
        _app = null;
        if (app is not null)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await app.StopAsync(timeout.Token).ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
        }
        Notify();
    }

    /// <summary>Ends an outage: the listener is back on the same port (or stops answering 503).</summary>
    public async Task ComeBackAsync(CancellationToken cancellationToken = default)
    {
        if (!IsDown)
        {
            throw new InvalidOperationException("The fake API server is not down.");
        }
        if (_app is null)
        {
            await StartListenerAsync(Port, cancellationToken).ConfigureAwait(false);
        }
        _unavailable = false;
        IsDown = false;
        Notify();
    }

    // ---- observation ----

    /// <summary>Open watches of a resource (plural, e.g. "services"; null = all).</summary>
    public int OpenWatches(string? resource = null) =>
        _store.Watchers.Count(w => resource is null || w.ResourceType.Plural == resource);

    /// <summary>Waits until at least <paramref name="count"/> watches of <paramref name="resource"/> are open.</summary>
    public Task WaitForWatchersAsync(string resource, int count, TimeSpan timeout) =>
        WaitUntilAsync(() => OpenWatches(resource) >= count, timeout, () => $"{count} open watch(es) of {resource}; open: {OpenWatches(resource)}");

    /// <summary>Waits for a logged request (at index ≥ <paramref name="after"/>) that matches; returns it.</summary>
    public async Task<FakeApiRequest> WaitForRequestAsync(Func<FakeApiRequest, bool> predicate, TimeSpan timeout, int after = 0)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        FakeApiRequest? found = null;
        var next = after;
        bool Scan()
        {
            lock (_requests)
            {
                for (; next < _requests.Count; next++)
                {
                    if (predicate(_requests[next]))
                    {
                        found = _requests[next];
                        return true;
                    }
                }
            }
            return false;
        }
        await WaitUntilAsync(Scan, timeout, () => "a matching request; received: " + string.Join("; ", Requests.Skip(after).TakeLast(20))).ConfigureAwait(false);
        return found!;
    }

    /// <summary>Waits (without polling sleeps: woken by every request, store change and watch open/close) until the condition holds.</summary>
    public async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string>? describe = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            Task signal;
            lock (_signalGate)
            {
                signal = _signal.Task;
            }
            if (condition())
            {
                return;
            }
            try
            {
                await signal.WaitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                throw new TimeoutException($"Fake Kubernetes API server: timed out after {timeout} waiting for {describe?.Invoke() ?? "the condition"}.");
            }
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        EndWatches(abort: true);
        if (_app is { } app)
        {
            _app = null;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await app.StopAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Stop gave up waiting for connections: disposing aborts them.
            }
            await app.DisposeAsync().ConfigureAwait(false);
        }
        if (_bookmarks is not null)
        {
            await _bookmarks.ConfigureAwait(false);
        }
        _stopping.Dispose();
        _certificates.Dispose();
        if (_tempDirectory.Length > 0 && Directory.Exists(_tempDirectory))
        {
            Directory.Delete(_tempDirectory, recursive: true);
        }
    }

    // ---- internals ----

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void Notify()
    {
        lock (_signalGate)
        {
            _signal.TrySetResult();
            _signal = NewSignal();
        }
    }

    private int EndWatches(bool abort)
    {
        var count = 0;
        foreach (var (watcher, _) in _openWatches)
        {
            watcher.Abort = abort;
            try
            {
                watcher.End.Cancel();
                count++;
            }
            catch (ObjectDisposedException)
            {
                // The watch ended on its own meanwhile.
            }
        }
        return count;
    }

    private static FakeResourceType TypeOf(JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        var apiVersion = obj["apiVersion"]?.GetValue<string>() ?? throw new ArgumentException("apiVersion is required", nameof(obj));
        var kind = obj["kind"]?.GetValue<string>() ?? throw new ArgumentException("kind is required", nameof(obj));
        return TypeOf(apiVersion, kind);
    }

    private static FakeResourceType TypeOf(string apiVersion, string kind) =>
        FakeResourceCatalog.FindByKind(apiVersion, kind) ?? throw new ArgumentException($"The fake serves no {apiVersion} {kind}.", nameof(kind));

    private async Task StartListenerAsync(int port, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(2));
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 1000;
            kestrel.Listen(IPAddress.Loopback, port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(_certificates.Server);
            });
        });
        var app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        _app = app;
        if (port == 0)
        {
            var address = app.Urls.First();
            Port = new Uri(address).Port;
            Url = new Uri($"https://127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}");
        }
    }

    private void WriteKubeconfig()
    {
        _tempDirectory = Path.Combine(Path.GetTempPath(), "mesh-fake-kube-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_tempDirectory);
        KubeconfigPath = Path.Combine(_tempDirectory, "kubeconfig");
        var ca = Convert.ToBase64String(Encoding.ASCII.GetBytes(CertificateAuthorityPem));
        var text = $$"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: fake
              cluster:
                server: {{Url.ToString().TrimEnd('/')}}
                certificate-authority-data: {{ca}}
            users:
            - name: fake-admin
              user:
                token: {{Token}}
            contexts:
            - name: fake
              context:
                cluster: fake
                user: fake-admin
                namespace: {{_options.DefaultNamespace}}
            current-context: fake
            preferences: {}

            """;
        File.WriteAllText(KubeconfigPath, text);
    }

    private async Task RunBookmarksAsync()
    {
        using var timer = new PeriodicTimer(_options.BookmarkInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                if (!_silenced && !IsDown)
                {
                    _store.Bookmark();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Disposed.
        }
    }

    private sealed record ServiceAccountToken(string Namespace, string ServiceAccount, string[] Audiences, string? PodName, string ServiceAccountUid, string? PodUid, DateTimeOffset? ExpiresAt);
}
