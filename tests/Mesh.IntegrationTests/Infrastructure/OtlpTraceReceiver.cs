using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Mesh.IntegrationTests.Otlp.Collector;
using Mesh.IntegrationTests.Otlp.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OtlpSpan = Mesh.IntegrationTests.Otlp.Trace.Span;

namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>
/// A minimal OTLP/gRPC trace receiver: real Kestrel on 127.0.0.1 port 0 (HTTP/2 without TLS, as a collector's
/// <c>otlp</c> receiver on 4317) serving <c>opentelemetry.proto.collector.trace.v1.TraceService/Export</c>, keeping every
/// span it is sent. Point a service at it with <c>OTEL_EXPORTER_OTLP_ENDPOINT=</c><see cref="Endpoint"/> and
/// <c>OTEL_EXPORTER_OTLP_PROTOCOL=grpc</c>.
/// </summary>
internal sealed class OtlpTraceReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ReceivedSpan> _spans = new();
    private int _exports;

    private OtlpTraceReceiver(WebApplication app) => _app = app;

    public Uri Endpoint { get; private set; } = null!;

    /// <summary>Gets how many Export calls arrived.</summary>
    public int Exports => Volatile.Read(ref _exports);

    public IReadOnlyList<ReceivedSpan> Spans => [.. _spans];

    public static async Task<OtlpTraceReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        OtlpTraceReceiver? self = null;
        builder.Services.AddSingleton(_ => new TraceService(self!));
        var app = builder.Build();
        app.MapGrpcService<TraceService>();
        self = new OtlpTraceReceiver(app);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        self.Endpoint = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        return self;
    }

    /// <summary>The spans of one trace (32 hex digits).</summary>
    public IReadOnlyList<ReceivedSpan> Trace(string traceId) => Spans.Where(s => s.TraceId == traceId).ToList();

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    private void Accept(ExportTraceServiceRequest request)
    {
        Interlocked.Increment(ref _exports);
        foreach (var resource in request.ResourceSpans)
        {
            var service = resource.Resource?.Attributes.FirstOrDefault(a => a.Key == "service.name")?.Value.StringValue ?? string.Empty;
            foreach (var scope in resource.ScopeSpans)
            {
                foreach (var span in scope.Spans)
                {
                    _spans.Enqueue(new ReceivedSpan(
                        service,
                        scope.Scope?.Name ?? string.Empty,
                        Hex(span.TraceId),
                        Hex(span.SpanId),
                        Hex(span.ParentSpanId),
                        span.Name,
                        span.Kind,
                        span.Attributes.ToDictionary(a => a.Key, a => Text(a.Value), StringComparer.Ordinal),
                        span.Status?.Code ?? Otlp.Trace.Status.Types.StatusCode.Unset,
                        span.TraceState));
                }
            }
        }
    }

    private static string Hex(ByteString bytes) => Convert.ToHexStringLower(bytes.Span);

    private static string Text(AnyValue value) => value.ValueCase switch
    {
        AnyValue.ValueOneofCase.StringValue => value.StringValue,
        AnyValue.ValueOneofCase.IntValue => value.IntValue.ToString(CultureInfo.InvariantCulture),
        AnyValue.ValueOneofCase.BoolValue => value.BoolValue ? "true" : "false",
        AnyValue.ValueOneofCase.DoubleValue => value.DoubleValue.ToString(CultureInfo.InvariantCulture),
        AnyValue.ValueOneofCase.BytesValue => Convert.ToHexStringLower(value.BytesValue.Span),
        _ => string.Empty,
    };

    private sealed class TraceService(OtlpTraceReceiver receiver) : Otlp.Collector.TraceService.TraceServiceBase
    {
        public override Task<ExportTraceServiceResponse> Export(ExportTraceServiceRequest request, ServerCallContext context)
        {
            receiver.Accept(request);
            return Task.FromResult(new ExportTraceServiceResponse());
        }
    }
}

/// <summary>One received span: its resource's <c>service.name</c>, its scope (ActivitySource) and its fields.</summary>
internal sealed record ReceivedSpan(
    string Service,
    string Scope,
    string TraceId,
    string SpanId,
    string ParentSpanId,
    string Name,
    OtlpSpan.Types.SpanKind Kind,
    IReadOnlyDictionary<string, string> Attributes,
    Otlp.Trace.Status.Types.StatusCode Status,
    string TraceState)
{
    public string? this[string key] => Attributes.TryGetValue(key, out var value) ? value : null;

    public override string ToString() =>
        $"{Service}/{Scope} '{Name}' {Kind} span {SpanId} parent {ParentSpanId} [{string.Join(", ", Attributes.Where(a => a.Key.StartsWith("mesh.", StringComparison.Ordinal) || a.Key is "error.type" or "http.request.resend_count" or "server.address").Select(a => $"{a.Key}={a.Value}"))}]";
}
