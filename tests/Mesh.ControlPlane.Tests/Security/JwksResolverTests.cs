using System.Net;
using Google.Protobuf;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>
/// The control plane's JWKS fetch against a real Kestrel JWKS server on 127.0.0.1: first fetch, refresh, a server that
/// goes down (last good keys keep serving), one that never answered (an empty key set is inlined: every token 401, no
/// token passes), bad and oversized answers, timeouts, and the push a key change triggers.
/// </summary>
public sealed class JwksResolverTests : IAsyncLifetime
{
    private const string KeysA = """{"keys":[{"kty":"RSA","kid":"a","n":"sXch","e":"AQAB"}]}""";
    private const string KeysB = """{"keys":[{"kty":"RSA","kid":"b","n":"tYdi","e":"AQAB"}]}""";

    private readonly string _state = Path.Combine(Path.GetTempPath(), "mesh-jwks-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
    private WebApplication? _server;
    private volatile int _status = 200;
    private volatile string _body = KeysA;
    private volatile int _delayMs;
    private int _requests;

    private Uri JwksUri { get; set; } = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        _server = builder.Build();
        _server.MapGet("/jwks", async context =>
        {
            Interlocked.Increment(ref _requests);
            if (_delayMs > 0)
            {
                await Task.Delay(_delayMs, context.RequestAborted);
            }

            context.Response.StatusCode = _status;
            await context.Response.WriteAsync(_body, context.RequestAborted);
        });
        await _server.StartAsync();
        var address = _server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        JwksUri = new Uri(new Uri(address), "/jwks");
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        if (Directory.Exists(_state))
        {
            Directory.Delete(_state, recursive: true);
        }
    }

    [Fact]
    public async Task RefreshDue_FirstFetch_KeysInlinedAndChangedRaised()
    {
        using var resolver = Resolver(out var store);
        var changes = 0;
        resolver.Changed += () => changes++;

        Assert.True(await resolver.RefreshDueAsync(CancellationToken.None));

        Assert.Equal(KeysA, resolver.GetJwks(JwksUri));
        Assert.Equal(1, changes);
        Assert.Equal(KeysA, Inlined(store, resolver));
    }

    [Fact]
    public async Task RefreshDue_NotDue_NoFetch_ThenRefreshedAfterInterval()
    {
        using var resolver = Resolver(out _);
        await resolver.RefreshDueAsync(CancellationToken.None);
        _body = KeysB;

        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None));
        Assert.Equal(1, _requests);

        _time.Advance(TimeSpan.FromMinutes(23)); // 20 min ± 10% jitter
        Assert.True(await resolver.RefreshDueAsync(CancellationToken.None));
        Assert.Equal(KeysB, resolver.GetJwks(JwksUri));
    }

    [Fact]
    public async Task RefreshDue_ServerDownAfterGoodFetch_LastGoodKeysKeepServing()
    {
        using var resolver = Resolver(out var store);
        await resolver.RefreshDueAsync(CancellationToken.None);
        await _server!.StopAsync();

        _time.Advance(TimeSpan.FromMinutes(23));
        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None));
        Assert.Equal(KeysA, Inlined(store, resolver));

        Assert.Equal(KeysA, resolver.GetJwks(JwksUri));
    }

    [Fact]
    public async Task RefreshDue_ServerErrors_KeepsLastGoodKeys_RetriesEveryMinute()
    {
        using var resolver = Resolver(out var store);
        await resolver.RefreshDueAsync(CancellationToken.None);
        _status = 500;
        _body = "oops";

        _time.Advance(TimeSpan.FromMinutes(23));
        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None));
        Assert.Equal(KeysA, Inlined(store, resolver));

        _status = 200;
        _body = KeysB;
        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None));
        _time.Advance(TimeSpan.FromSeconds(31));
        Assert.True(await resolver.RefreshDueAsync(CancellationToken.None));
        Assert.Equal(KeysB, Inlined(store, resolver));
    }

    [Theory]
    [InlineData(500, "down")]
    [InlineData(200, "not json")]
    [InlineData(200, """{"keys":[]}""")]
    [InlineData(200, """{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}""")]
    [InlineData(200, """{"keys":[{"kty":"RSA","kid":"a","n":"sXch","e":"AQAB","d":"c2VjcmV0"}]}""")]
    public async Task RefreshDue_NeverAnyGoodKeys_EmptyKeySetInlined(int status, string body)
    {
        _status = status;
        _body = body;
        using var resolver = Resolver(out var store);

        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None));

        Assert.Null(resolver.GetJwks(JwksUri));
        Assert.Equal(JwksDocument.Empty, Inlined(store, resolver));
    }

    [Theory]
    [InlineData("d")]
    [InlineData("p")]
    [InlineData("q")]
    [InlineData("dp")]
    [InlineData("dq")]
    [InlineData("qi")]
    [InlineData("oth")]
    public async Task RefreshDue_AnswerWithPrivateMember_RefusedAsFailedFetch_LastGoodKeysKeepServing(string member)
    {
        // An IdP endpoint that leaks its signing key must not have it pushed to every workload.
        var logs = new LogSink();
        using var resolver = Resolver(out var store, logger: logs);
        await resolver.RefreshDueAsync(CancellationToken.None);
        _body = KeysB.Replace("\"e\":\"AQAB\"", $"\"e\":\"AQAB\",\"{member}\":\"c2VjcmV0\"", StringComparison.Ordinal);

        _time.Advance(TimeSpan.FromMinutes(23));
        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None));

        Assert.Equal(KeysA, Inlined(store, resolver));
        Assert.DoesNotContain("c2VjcmV0", Inlined(store, resolver), StringComparison.Ordinal);
        Assert.Contains(logs.Messages, m => m.Contains(JwksUri.ToString(), StringComparison.Ordinal)
            && m.Contains($"keys[0].{member}: a private key member", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RefreshDue_OversizedAnswer_Refused()
    {
        _body = KeysA.Replace("sXch", new string('A', 4000), StringComparison.Ordinal);
        using var resolver = Resolver(out _, new JwksOptions { MaxResponseBytes = 2048 });

        await resolver.RefreshDueAsync(CancellationToken.None);

        Assert.Null(resolver.GetJwks(JwksUri));
    }

    [Fact]
    public async Task RefreshDue_SlowServer_TimesOut()
    {
        _delayMs = 5000;
        using var resolver = Resolver(out _, new JwksOptions { FetchTimeout = TimeSpan.FromMilliseconds(200) });
        var started = System.Diagnostics.Stopwatch.StartNew();

        await resolver.RefreshDueAsync(CancellationToken.None);

        Assert.Null(resolver.GetJwks(JwksUri));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(4), $"took {started.Elapsed}");
    }

    [Fact]
    public async Task RefreshDue_UriRemovedFromConfig_Forgotten()
    {
        using var resolver = Resolver(out var store);
        await resolver.RefreshDueAsync(CancellationToken.None);

        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("empty.yaml", string.Empty)])));
        await resolver.RefreshDueAsync(CancellationToken.None);

        Assert.Null(resolver.GetJwks(JwksUri));
    }

    [Fact]
    public async Task Background_KeyChange_TriggersPublisherPush()
    {
        var options = new ControlPlaneOptions { DebounceInterval = TimeSpan.Zero, StateDirectory = _state };
        var store = Store();
        using var resolver = new JwksResolver(store, options, TimeProvider.System, NullLogger<JwksResolver>.Instance);
        using var publisher = new XdsPublisher(store, options, TimeProvider.System, NullLogger<XdsPublisher>.Instance, resolver);
        var pushed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = publisher.Subscribe(() =>
        {
            if (publisher.Current.InboundListeners.Values.Any(l => l.Resource.ToByteString().ToStringUtf8().Contains("\"kid\":\"a\"", StringComparison.Ordinal)))
            {
                pushed.TrySetResult();
            }
        });
        await publisher.StartAsync(CancellationToken.None);
        await resolver.StartAsync(CancellationToken.None);

        await pushed.Task.WaitAsync(TimeSpan.FromSeconds(30));

        await resolver.StopAsync(CancellationToken.None);
        await publisher.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Restart_JwksServerDown_LastGoodKeysServeFromTheFirstSnapshot_ValidTokenPasses()
    {
        // A control plane restarted while the IdP is down must not push an empty key set (every valid token 401).
        using var signing = System.Security.Cryptography.RSA.Create(2048);
        var p = signing.ExportParameters(false);
        _body = $$"""{"keys":[{"kty":"RSA","kid":"a","alg":"RS256","n":"{{Base64UrlEncoder.Encode(p.Modulus)}}","e":"{{Base64UrlEncoder.Encode(p.Exponent)}}"}]}""";
        using (var before = Resolver(out _))
        {
            Assert.True(await before.RefreshDueAsync(CancellationToken.None));
        }

        await _server!.StopAsync();
        var options = new ControlPlaneOptions { StateDirectory = _state };
        var store = Store();
        using var resolver = new JwksResolver(store, options, _time, NullLogger<JwksResolver>.Instance, new Random(7));
        using var publisher = new XdsPublisher(store, options, _time, NullLogger<XdsPublisher>.Instance, resolver);

        Assert.Equal(_body, ListenerJwks(publisher));
        Assert.True(await TokenPassesAsync(ListenerJwks(publisher), signing));

        Assert.False(await resolver.RefreshDueAsync(CancellationToken.None)); // the server is down: a failed fetch
        publisher.Rebuild();
        Assert.Equal(_body, ListenerJwks(publisher));
        Assert.True(await TokenPassesAsync(ListenerJwks(publisher), signing));
    }

    [Fact]
    public async Task Persist_GoodFetch_WrittenAtomicallyOwnerOnly_NewKeysReplaceIt()
    {
        using var resolver = Resolver(out _);
        await resolver.RefreshDueAsync(CancellationToken.None);
        var path = resolver.PersistedPath(JwksUri);

        Assert.Equal(KeysA, await File.ReadAllTextAsync(path));
        Assert.Equal([path], Directory.GetFiles(Path.GetDirectoryName(path)!)); // no temp file left behind
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }

        _body = KeysB;
        _time.Advance(TimeSpan.FromMinutes(23));
        Assert.True(await resolver.RefreshDueAsync(CancellationToken.None));
        Assert.Equal(KeysB, await File.ReadAllTextAsync(path));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"keys":[]}""")]
    [InlineData("""{"keys":[{"kty":"RSA","kid":"a","n":"sXch","e":"AQAB","d":"c2VjcmV0"}]}""")]
    [InlineData("oversized")]
    public async Task Restart_PersistedKeysUnusable_IgnoredWithWarning_NoKeys(string content)
    {
        await _server!.StopAsync();
        var logs = new LogSink();
        using var resolver = Resolver(out var store, new JwksOptions { MaxResponseBytes = 1024 }, logs);
        var path = resolver.PersistedPath(JwksUri);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await File.WriteAllTextAsync(path, content == "oversized" ? KeysA.Replace("sXch", new string('A', 2000), StringComparison.Ordinal) : content);

        Assert.Null(resolver.GetJwks(JwksUri));
        Assert.Equal(JwksDocument.Empty, Inlined(store, resolver));
        Assert.Contains(logs.Messages, m => m.Contains(path, StringComparison.Ordinal) && m.Contains("ignored", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Persist_UriRemovedFromConfig_KeptKeysDeleted()
    {
        using var resolver = Resolver(out var store);
        await resolver.RefreshDueAsync(CancellationToken.None);
        var path = resolver.PersistedPath(JwksUri);
        Assert.True(File.Exists(path));

        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("empty.yaml", string.Empty)])));
        await resolver.RefreshDueAsync(CancellationToken.None);

        Assert.False(File.Exists(path));
    }

    private static string ListenerJwks(XdsPublisher publisher)
    {
        var listener = Assert.Single(publisher.Current.InboundListeners.Values).Resource.Unpack<Mesh.Xds.Envoy.Config.Listener.V3.Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3.HttpConnectionManager>();
        var jwt = manager.HttpFilters.Single(f => f.Name == JwtAuthnTranslator.FilterName).TypedConfig.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication>();
        return jwt.Providers["origins-0"].LocalJwks.InlineString;
    }

    /// <summary>Validates an RS256 token of the rule's issuer against <paramref name="jwks"/> as the client does (IdentityModel).</summary>
    private static async Task<bool> TokenPassesAsync(string jwks, System.Security.Cryptography.RSA signing)
    {
        var handler = new JsonWebTokenHandler();
        var token = handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = "https://issuer.example.com",
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            Expires = DateTime.UtcNow.AddHours(1),
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(signing) { KeyId = "a" }, SecurityAlgorithms.RsaSha256),
        });
        var result = await handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = "https://issuer.example.com",
            ValidateAudience = false,
            IssuerSigningKeys = new JsonWebKeySet(jwks).GetSigningKeys(),
        });
        return result.IsValid;
    }

    private static string Inlined(ConfigStore store, IJwksSource jwks) =>
        JwtAuthnTranslator.Build(store.Current.Config.RequestAuthentications, jwks)!.Providers["origins-0"].LocalJwks.InlineString;

    private JwksResolver Resolver(out ConfigStore store, JwksOptions? jwks = null, ILogger<JwksResolver>? logger = null)
    {
        store = Store();
        return new JwksResolver(store, new ControlPlaneOptions { Jwks = jwks ?? new JwksOptions(), StateDirectory = _state }, _time, logger ?? NullLogger<JwksResolver>.Instance, new Random(7));
    }

    private ConfigStore Store()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var result = YamlConfigLoader.Load([("ra.yaml", $$$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: orders}
            spec:
              hosts: [orders.default.svc.cluster.local]
              ports: [{number: 80, name: http, protocol: HTTP}]
              endpoints: [{address: 127.0.0.1, ports: {http: 8080}, labels: {app: orders}}]
            ---
            apiVersion: security.istio.io/v1
            kind: RequestAuthentication
            metadata: {name: jwt}
            spec:
              jwtRules:
              - {issuer: "https://issuer.example.com", jwksUri: "{{{JwksUri}}}"}
            """)]);
        Assert.True(store.ApplyYaml(result), string.Join("\n", result.Errors));
        return store;
    }

    private sealed class LogSink : ILogger<JwksResolver>
    {
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _messages = new();

        public IEnumerable<string> Messages => _messages;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _messages.Enqueue(formatter(state, exception));
    }
}
