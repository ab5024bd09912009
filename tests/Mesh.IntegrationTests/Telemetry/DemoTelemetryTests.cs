using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Mesh.Samples;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Telemetry;

/// <summary>
/// The sample services' telemetry set-up (<see cref="DemoTelemetryExtensions"/>) on a real Kestrel: what its
/// <c>/metrics</c> writes for Istio-named instruments, its OTLP settings, and requests with an OTLP endpoint down or slow.
/// </summary>
public sealed class DemoTelemetryTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ScrapeEndpoint_KeepsIstioNamesUnchanged()
    {
        await using var app = await StartAppAsync(new Dictionary<string, string?>());
        using var meter = new Meter("Mesh.Client");
        var requests = meter.CreateCounter<long>("istio_requests_total");
        var duration = meter.CreateHistogram<double>("istio_request_duration_milliseconds", unit: "ms");
        var bytes = meter.CreateHistogram<long>("istio_request_bytes", unit: "By");
        requests.Add(3, new KeyValuePair<string, object?>("reporter", "source"));
        duration.Record(12.5, new KeyValuePair<string, object?>("reporter", "source"));
        bytes.Record(100, new KeyValuePair<string, object?>("reporter", "source"));

        using var http = new HttpClient { BaseAddress = app.Urls.Select(u => new Uri(u)).First() };
        var text = await http.GetStringAsync("/metrics");
        var lines = text.Split('\n');
        output.WriteLine(string.Join('\n', lines.Where(l => l.Contains("istio", StringComparison.Ordinal))));

        Assert.Contains(lines, l => l.StartsWith("istio_requests_total{reporter=\"source\"} 3", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("istio_request_duration_milliseconds_bucket{reporter=\"source\",le=", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("istio_request_duration_milliseconds_count{reporter=\"source\"} 1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("istio_request_bytes_sum{reporter=\"source\"} 100", StringComparison.Ordinal));
        Assert.DoesNotContain("_total_total", text, StringComparison.Ordinal);
        Assert.DoesNotContain("milliseconds_milliseconds", text, StringComparison.Ordinal);
        Assert.DoesNotContain("bytes_bytes", text, StringComparison.Ordinal);
        Assert.DoesNotContain("otel_scope_", text, StringComparison.Ordinal);
        Assert.DoesNotContain("target_info", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IstioSeries_PastOpenTelemetrysDefaultOf2000LabelSets_KeepTheirLabels()
    {
        // Both reporters fold at 1,024 sets each, so one instrument can hold more than the SDK's default of 2,000, past
        // which a set would land in one otel_metric_overflow series without Istio's labels.
        await using var app = await StartAppAsync(new Dictionary<string, string?>());
        using var meter = new Meter("Mesh.Client");
        var requests = meter.CreateCounter<long>("istio_requests_total");
        const int Sets = 2500;
        for (var i = 0; i < Sets; i++)
        {
            requests.Add(1, new KeyValuePair<string, object?>("source_principal", $"spiffe://cluster.local/ns/shop/sa/caller-{i}"));
        }

        using var http = new HttpClient { BaseAddress = app.Urls.Select(u => new Uri(u)).First() };
        var text = await http.GetStringAsync("/metrics");

        Assert.DoesNotContain("otel_metric_overflow", text, StringComparison.Ordinal);
        Assert.Equal(Sets, text.Split('\n').Count(l => l.StartsWith("istio_requests_total{source_principal=", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]
    [InlineData("OTEL_EXPORTER_OTLP_PROTOCOL", "gRPC ")]
    [InlineData("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317")]
    [InlineData("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://127.0.0.1:4317")]
    public void InvalidOtlpSetting_FailsStartupNamingTheKey(string key, string value)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration[key] = value;
        var error = Assert.Throws<InvalidOperationException>(() => builder.AddDemoTelemetry("test"));
        output.WriteLine(error.Message);
        Assert.Contains(key, error.Message, StringComparison.Ordinal);
        Assert.Contains(value, error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// An OTLP endpoint that accepts connections and never answers (slow) or refuses them (down): the exporter is on the
    /// path (the slow one sees its connection), yet every request is answered promptly while an export hangs.
    /// </summary>
    [Theory]
    [InlineData("grpc", true)]
    [InlineData("http/protobuf", true)]
    [InlineData("grpc", false)]
    [InlineData("http/protobuf", false)]
    public async Task OtlpEndpointSlowOrDown_RequestsAreUnaffected(string protocol, bool slow)
    {
        await using var sink = new BlackHole();
        if (!slow)
        {
            sink.Close();
        }

        using var logs = new WarningLog();
        await using var app = await StartAppAsync(
            new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{sink.Port}",
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol,
            // Export often, and give up on a hung export after 3 s (the default is 10 s), so that the test is short.
            ["OTEL_BSP_SCHEDULE_DELAY"] = "50",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "100",
            ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "3000",
        },
            logs);
        using var http = new HttpClient { BaseAddress = app.Urls.Select(u => new Uri(u)).First(), Timeout = TimeSpan.FromSeconds(10) };

        // A first request makes a span; the batch processor exports it within 50 ms and, when slow, hangs in the sink.
        using (var first = await http.GetAsync("/work"))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        if (slow)
        {
            await Infrastructure.Eventually.HoldsAsync(() => Task.FromResult(sink.Accepted > 0), "the OTLP exporter to connect to the sink", TimeSpan.FromSeconds(30));
        }

        const int Count = 200;
        var slowest = TimeSpan.Zero;
        var total = Stopwatch.StartNew();
        for (var i = 0; i < Count; i++)
        {
            var one = Stopwatch.StartNew();
            using var response = await http.GetAsync("/work");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            slowest = one.Elapsed > slowest ? one.Elapsed : slowest;
        }

        output.WriteLine($"{protocol} {(slow ? "slow" : "down")}: {Count} requests in {total.Elapsed.TotalMilliseconds:0} ms, slowest {slowest.TotalMilliseconds:0} ms, sink accepted {sink.Accepted} connection(s)");

        // A hung export (3 s timeout) would show as a request of seconds; generous for a loaded 2-core machine.
        Assert.True(slowest < TimeSpan.FromSeconds(1.5), $"slowest request took {slowest.TotalMilliseconds:0} ms");

        // Dozens of exports failed by now (one every 50-100 ms; a hung one gives up after 3 s): the app's log got one
        // warning naming the endpoint, not one per failure.
        await Infrastructure.Eventually.HoldsAsync(() => Task.FromResult(logs.Warnings.Count > 0), "the OTLP failure warning", TimeSpan.FromSeconds(30));
        var warning = Assert.Single(logs.Warnings);
        output.WriteLine(warning.Message);
        Assert.Equal("OtlpExportFailed", warning.EventName);
        Assert.Contains($"OTLP export to http://127.0.0.1:{sink.Port} failed: ", warning.Message, StringComparison.Ordinal);

        // Closing the sink first lets the provider's shutdown flush fail fast instead of waiting out the export timeout.
        await sink.DisposeAsync();
    }

    [Fact]
    public void OtlpExportFailures_OneWarningPerInterval_ThenACount()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        using var logs = new WarningLog();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        using var log = new OtlpExportFailureLog(factory.CreateLogger<OtlpExportFailureLog>(), "http://collector:4317", time);

        log.OnExportFailed("Exporter failed send data to collector to http://collector:4317/ endpoint. Data will not be sent. Exception: System.Net.Http.HttpRequestException: Connection refused\n   at a stack frame");
        for (var i = 0; i < 10; i++)
        {
            time.Advance(OtlpExportFailureLog.Interval / 20);
            log.OnExportFailed("again");
        }

        var first = Assert.Single(logs.Warnings);
        Assert.Equal("OtlpExportFailed", first.EventName);
        Assert.Contains("Connection refused", first.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("stack frame", first.Message, StringComparison.Ordinal);

        time.Advance(OtlpExportFailureLog.Interval / 2);
        log.OnExportFailed("the latest reason");

        Assert.Equal(2, logs.Warnings.Count);
        var second = logs.Warnings[1];
        Assert.Equal("OtlpExportStillFailing", second.EventName);
        Assert.Contains("still failing: 11 failure(s)", second.Message, StringComparison.Ordinal);
        Assert.Contains("the latest reason", second.Message, StringComparison.Ordinal);
    }

    private static async Task<WebApplication> StartAppAsync(IReadOnlyDictionary<string, string?> settings, ILoggerProvider? logs = null)
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        if (logs is not null)
        {
            builder.Logging.AddProvider(logs);
        }

        // The test folder holds inventory's appsettings.json (HTTP/2 only); this app speaks HTTP/1.1 too.
        builder.Configuration["Kestrel:EndpointDefaults:Protocols"] = "Http1AndHttp2";
        foreach (var (key, value) in settings)
        {
            builder.Configuration[key] = value;
        }

        builder.AddDemoTelemetry("test");
        var app = builder.Build();
        app.MapGet("/work", () => Results.Ok("done"));
        app.MapDemoTelemetry();
        await app.StartAsync();
        return app;
    }

    /// <summary>The warnings (and worse) <see cref="OtlpExportFailureLog"/> writes, with their event names.</summary>
    private sealed class WarningLog : ILoggerProvider
    {
        private readonly List<(string EventName, string Message)> _warnings = [];

        public IReadOnlyList<(string EventName, string Message)> Warnings
        {
            get
            {
                lock (_warnings)
                {
                    return [.. _warnings];
                }
            }
        }

        public ILogger CreateLogger(string categoryName) =>
            categoryName == typeof(OtlpExportFailureLog).FullName ? new Recorder(this) : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

        public void Dispose()
        {
        }

        private sealed class Recorder(WarningLog owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel))
                {
                    lock (owner._warnings)
                    {
                        owner._warnings.Add((eventId.Name ?? "", formatter(state, exception)));
                    }
                }
            }
        }
    }

    /// <summary>A TCP listener on 127.0.0.1 that accepts connections and never reads or writes: an OTLP endpoint that hangs.</summary>
    private sealed class BlackHole : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly List<Socket> _held = [];
        private readonly Task _accepting;
        private int _accepted;

        public BlackHole()
        {
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _accepting = AcceptAsync();
        }

        public int Port { get; }

        public int Accepted => Volatile.Read(ref _accepted);

        /// <summary>Stops listening: connections to the port are refused from now on (the endpoint is down).</summary>
        public void Close() => _listener.Stop();

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _accepting.ContinueWith(static _ => { }, TaskScheduler.Default);
            lock (_held)
            {
                foreach (var socket in _held)
                {
                    socket.Dispose();
                }
            }
        }

        private async Task AcceptAsync()
        {
            while (true)
            {
                var socket = await _listener.AcceptSocketAsync();
                Interlocked.Increment(ref _accepted);
                lock (_held)
                {
                    _held.Add(socket);
                }
            }
        }
    }
}
