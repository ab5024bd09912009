using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>The access log's decisions (on/off, sampling, failures always logged) and the fields of an entry.</summary>
public sealed class MeshAccessLogTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 3, 10, 11, 12, 345, TimeSpan.Zero);

    [Fact]
    public void Enabled_OffByDefault_EvenWithALogger()
    {
        using var capture = new AccessLogCapture();

        var log = Create(capture, _ => { });

        Assert.False(log.Enabled);
    }

    [Fact]
    public void Enabled_OnButCategoryBelowInformation_IsOff()
    {
        using var capture = new AccessLogCapture(LogLevel.Warning);

        var log = Create(capture, a => a.Enabled = true);

        Assert.False(log.Enabled);
    }

    [Fact]
    public void TryBegin_SampleRate_DrawsFromTheRandomSource()
    {
        using var capture = new AccessLogCapture();
        var draws = new Queue<double>([0.10, 0.70, 0.29, 0.30, 0.99]);
        var log = Create(capture, a => (a.Enabled, a.SampleRate, a.AlwaysLogErrors) = (true, 0.3, false), () => draws.Dequeue());

        var followed = Enumerable.Range(0, 5).Select(_ => (log.TryBegin(out var sampled), sampled)).ToList();

        Assert.Equal([(true, true), (false, false), (true, true), (false, false), (false, false)], followed);
        Assert.Empty(draws);
    }

    [Fact]
    public void TryBegin_SampleRateOne_NeverDraws()
    {
        using var capture = new AccessLogCapture();
        var log = Create(capture, a => a.Enabled = true, () => throw new InvalidOperationException("drew"));

        Assert.True(log.TryBegin(out var sampled));
        Assert.True(sampled);
    }

    [Theory]
    [InlineData(200, (int)(ResponseFlags.None), false)]
    [InlineData(302, (int)(ResponseFlags.None), false)]
    [InlineData(200, (int)(ResponseFlags.DelayInjected), false)]
    [InlineData(403, (int)(ResponseFlags.None), true)]
    [InlineData(503, (int)(ResponseFlags.UpstreamConnectionFailure), true)]
    [InlineData(0, (int)(ResponseFlags.DownstreamConnectionTermination), true)]
    [InlineData(200, (int)(ResponseFlags.UpstreamRetryLimitExceeded), true)]
    public void ShouldLog_SampledOut_OnlyFailuresWhenAlwaysLogErrors(int code, int flagBits, bool logged)
    {
        var flags = (ResponseFlags)flagBits;
        using var capture = new AccessLogCapture();
        var always = Create(capture, a => (a.Enabled, a.SampleRate) = (true, 0), () => 0.5);
        var never = Create(capture, a => (a.Enabled, a.SampleRate, a.AlwaysLogErrors) = (true, 0.5, false), () => 0.9);

        Assert.True(always.TryBegin(out var sampled));
        Assert.False(sampled);
        Assert.Equal(logged, always.ShouldLog(sampled, code, -1, flags));
        Assert.False(never.TryBegin(out _));
        Assert.True(never.ShouldLog(sampled: true, code, -1, flags));
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(-1, false)]
    [InlineData(7, true)]
    [InlineData(14, true)]
    public void ShouldLog_SampledOutGrpcCall_FailedStatusIsAFailure(int grpcStatus, bool logged)
    {
        using var capture = new AccessLogCapture();
        var log = Create(capture, a => (a.Enabled, a.SampleRate) = (true, 0));

        Assert.Equal(logged, log.ShouldLog(sampled: false, 200, grpcStatus, ResponseFlags.None));
    }

    [Fact]
    public void LogInbound_Fields_AreIstiosKeys_PathWithoutQuery()
    {
        using var capture = new AccessLogCapture();
        var log = Create(capture, a => a.Enabled = true);
        var context = Context("/orders/7?access_token=secret");

        log.LogInbound(context, Start, sampled: true, "spiffe://cluster.local/ns/shop/sa/frontend", grpc: false, 403, -1, ResponseFlags.None, 12.7, 5, 19, "rbac_access_denied");

        var entry = Assert.Single(capture.Entries);
        Assert.Equal(new EventId(1, "AccessLog"), entry.EventId);
        Assert.Equal(LogLevel.Information, entry.Level);
        var expected = new Dictionary<string, object?>
        {
            ["start_time"] = "2026-12-03T10:11:12.345Z",
            ["method"] = "DELETE",
            ["path"] = "/orders/7",
            ["protocol"] = "HTTP/2",
            ["response_code"] = 403,
            ["response_flags"] = "-",
            ["response_code_details"] = "rbac_access_denied",
            ["connection_termination_details"] = null,
            ["upstream_transport_failure_reason"] = null,
            ["bytes_received"] = 5L,
            ["bytes_sent"] = 19L,
            ["duration"] = 12L,
            ["upstream_service_time"] = null,
            ["x_forwarded_for"] = "10.1.2.3",
            ["user_agent"] = "test-agent/1.0",
            ["request_id"] = "req-1",
            ["authority"] = "orders.shop:8080",
            ["upstream_host"] = "127.0.0.1:8080",
            ["upstream_cluster"] = "inbound|8080||",
            ["upstream_local_address"] = null,
            ["downstream_local_address"] = "127.0.0.1:8080",
            ["downstream_remote_address"] = "127.0.0.2:50000",
            ["requested_server_name"] = null,
            ["route_name"] = "/orders/{id}",
            ["direction"] = "inbound",
            ["reporter"] = "destination",
            ["source_principal"] = "spiffe://cluster.local/ns/shop/sa/frontend",
            ["destination_principal"] = null,
            ["attempts"] = null,
            ["grpc_status"] = null,
        };
        Assert.Equal(expected.OrderBy(p => p.Key), entry.Fields.Where(p => p.Key != "{OriginalFormat}").OrderBy(p => p.Key));
        Assert.Equal(MeshAccessLog.AccessLogEntry.Keys.Count + 1, entry.Fields.Count);
        Assert.Equal(MeshAccessLog.AccessLogEntry.Keys.Order(StringComparer.Ordinal), expected.Keys.Order(StringComparer.Ordinal));

        // Envoy's text format: a value it does not have is "-", never "(null)" (structured, it stays null).
        Assert.Equal(
            "[2026-12-03T10:11:12.345Z] \"DELETE /orders/7 HTTP/2\" 403 - rbac_access_denied - \"-\" 5 19 12 - \"10.1.2.3\" \"test-agent/1.0\" \"req-1\" "
                + "\"orders.shop:8080\" \"127.0.0.1:8080\" inbound|8080|| - 127.0.0.1:8080 127.0.0.2:50000 - /orders/{id} inbound destination "
                + "spiffe://cluster.local/ns/shop/sa/frontend - - -",
            entry.Message);
        Assert.DoesNotContain("secret", entry.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LogInbound_SecureWorkload_ItsPrincipalOnlyForACallerOverMtls()
    {
        // As Envoy, both principals come from the caller's TLS connection: a plaintext caller (PERMISSIVE) sees neither.
        using var capture = new AccessLogCapture();
        var log = Create(capture, a => a.Enabled = true, mesh: options =>
        {
            (options.Service, options.Namespace) = ("orders", "shop");
            options.ControlPlane.Address = new Uri("https://127.0.0.1:15012");
        });

        log.LogInbound(Context("/mtls"), Start, sampled: true, "spiffe://cluster.local/ns/shop/sa/frontend", grpc: false, 200, -1, ResponseFlags.None, 1, 0, 0, null);
        log.LogInbound(Context("/plaintext"), Start, sampled: true, null, grpc: false, 200, -1, ResponseFlags.None, 1, 0, 0, null);

        var mtls = Assert.Single(capture.Entries, e => e.Text("path") == "/mtls");
        var plaintext = Assert.Single(capture.Entries, e => e.Text("path") == "/plaintext");
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/orders", mtls.Text("destination_principal"));
        Assert.Null(plaintext.Fields["destination_principal"]);
        Assert.Null(plaintext.Fields["source_principal"]);
    }

    [Fact]
    public void LogInbound_IncludeQuery_KeepsTheQuery()
    {
        using var capture = new AccessLogCapture();
        var log = Create(capture, a => (a.Enabled, a.IncludeQuery) = (true, true));

        log.LogInbound(Context("/orders/7?page=2"), Start, sampled: true, null, grpc: false, 200, -1, ResponseFlags.None, 1, 0, 0, null);

        var entry = Assert.Single(capture.Entries);
        Assert.Equal("/orders/7?page=2", entry.Text("path"));
        Assert.Equal("via_upstream", entry.Text("response_code_details"));
    }

    [Fact]
    public void LogInbound_SampledOutSuccess_WritesNothing_SampledOutFailure_IsWritten()
    {
        using var capture = new AccessLogCapture();
        var log = Create(capture, a => (a.Enabled, a.SampleRate) = (true, 0));

        log.LogInbound(Context("/a"), Start, sampled: false, null, grpc: false, 200, -1, ResponseFlags.None, 1, 0, 0, null);
        log.LogInbound(Context("/b"), Start, sampled: false, null, grpc: true, 200, 14, ResponseFlags.RateLimited, 1, 0, 0, "local_rate_limited");

        var entry = Assert.Single(capture.Entries);
        Assert.Equal("/b", entry.Text("path"));
        Assert.Equal("RL", entry.Text("response_flags"));
        Assert.Equal(14, entry.Fields["grpc_status"]);
    }

    [Theory]
    [InlineData((int)(ResponseFlags.NoRouteFound), "route_not_found")]
    [InlineData((int)(ResponseFlags.NoHealthyUpstream), "no_healthy_upstream")]
    [InlineData((int)(ResponseFlags.NoClusterFound), "cluster_not_found")]
    [InlineData((int)(ResponseFlags.UpstreamOverflow), "upstream_reset_before_response_started{overflow}")]
    [InlineData((int)(ResponseFlags.UpstreamConnectionFailure | ResponseFlags.UpstreamRetryLimitExceeded), "upstream_reset_before_response_started{connection_failure}")]
    [InlineData((int)(ResponseFlags.UpstreamRequestTimeout), "response_timeout")]
    [InlineData((int)(ResponseFlags.DownstreamConnectionTermination), "downstream_remote_disconnect")]
    public void OutboundDetails_Failure_EnvoysDetail(int flagBits, string details)
    {
        var flags = (ResponseFlags)flagBits;
        Assert.Equal(details, MeshAccessLog.OutboundDetails(null, new HttpRequestException("x"), flags, route: null));
    }

    [Fact]
    public void OutboundDetails_Responses_ViaUpstreamOrTheFaultFilters()
    {
        using var response = new HttpResponseMessage(HttpStatusCode.ServiceUnavailable);

        Assert.Equal("via_upstream", MeshAccessLog.OutboundDetails(response, null, ResponseFlags.None, route: null));
        Assert.Equal("via_upstream", MeshAccessLog.OutboundDetails(response, null, ResponseFlags.UpstreamRetryLimitExceeded, route: null));
        Assert.Equal("fault_filter_abort", MeshAccessLog.OutboundDetails(response, null, ResponseFlags.FaultInjected, route: null));
    }

    private static MeshAccessLog Create(AccessLogCapture capture, Action<MeshAccessLogOptions> configure, Func<double>? random = null, Action<ServiceMeshOptions>? mesh = null)
    {
        var options = new ServiceMeshOptions();
        configure(options.Telemetry.AccessLog);
        mesh?.Invoke(options);
        // Not disposed here: the access log keeps its logger (the capture is the test's to dispose).
        var factory = LoggerFactory.Create(b => b.AddProvider(capture).SetMinimumLevel(LogLevel.Trace));
        return new MeshAccessLog(factory, Options.Create(options), TimeProvider.System, random);
    }

    private static DefaultHttpContext Context(string target)
    {
        var context = new DefaultHttpContext();
        var request = context.Request;
        request.Method = "DELETE";
        request.Protocol = "HTTP/2";
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = target;
        var query = target.IndexOf('?', StringComparison.Ordinal);
        request.Path = query < 0 ? target : target[..query];
        request.Host = new HostString("orders.shop:8080");
        request.Headers.UserAgent = "test-agent/1.0";
        request.Headers["X-Forwarded-For"] = "10.1.2.3";
        request.Headers["X-Request-Id"] = "req-1";
        context.Connection.LocalIpAddress = IPAddress.Loopback;
        context.Connection.LocalPort = 8080;
        context.Connection.RemoteIpAddress = IPAddress.Parse("127.0.0.2");
        context.Connection.RemotePort = 50000;
        context.SetEndpoint(new RouteEndpoint(_ => Task.CompletedTask, RoutePatternFactory.Parse("/orders/{id}"), 0, null, "orders"));
        return context;
    }
}
