using System.Diagnostics.Metrics;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>Istio's TCP metrics (the sidecar's tunnels): names, and the request label set less the HTTP-only labels.</summary>
public sealed class TcpMetricsLabelsTests
{
    private static readonly string[] IstioTcpLabels =
    [
        "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
        "source_canonical_service", "source_canonical_revision", "source_cluster", "destination_workload",
        "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
        "destination_service", "destination_service_name", "destination_service_namespace", "destination_canonical_service",
        "destination_canonical_revision", "destination_cluster", "request_protocol", "response_flags", "connection_security_policy",
    ];

    [Fact]
    public void Instruments_AreIstiosTcpCountersOnTheMeshMeter()
    {
        using var services = Services();
        var metrics = services.GetRequiredService<MeshMetrics>();
        Counter<long>[] counters = [metrics.TcpSentBytes, metrics.TcpReceivedBytes, metrics.TcpConnectionsOpened, metrics.TcpConnectionsClosed];

        Assert.Equal(
            ["istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total", "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"],
            counters.Select(c => c.Name));
        Assert.All(counters, c => Assert.Equal(MeshTelemetry.MeterName, c.Meter.Name));
        Assert.All(counters, c => Assert.Null(c.Unit));
    }

    [Fact]
    public void TcpSourceLabels_ReporterSource_TcpProtocol_UpstreamPrincipal_NoHttpLabels()
    {
        using var services = Services();
        var labels = services.GetRequiredService<IstioRequestMetrics>()
            .TcpSourceLabels("echo.default.svc.cluster.local", "spiffe://cluster.local/ns/default/sa/echo", ResponseFlags.None)
            .ToDictionary(l => l.Key, l => (string?)l.Value);

        Assert.Equal(IstioTcpLabels.Order(StringComparer.Ordinal), labels.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("source", labels["reporter"]);
        Assert.Equal("tcp", labels["request_protocol"]);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/echo", labels["destination_principal"]);
        Assert.Equal("echo.default.svc.cluster.local", labels["destination_service"]);
        Assert.Equal("echo", labels["destination_service_name"]);
        Assert.Equal("orders", labels["source_workload"]);
        Assert.Equal("-", labels["response_flags"]);
        Assert.Equal("unknown", labels["connection_security_policy"]);
    }

    [Fact]
    public void TcpSourceLabels_FailedConnect_UnknownPrincipal_FlagUf()
    {
        using var services = Services();
        var labels = services.GetRequiredService<IstioRequestMetrics>()
            .TcpSourceLabels("echo.default.svc.cluster.local", upstreamPrincipal: null, ResponseFlags.UpstreamConnectionFailure)
            .ToDictionary(l => l.Key, l => (string?)l.Value);

        Assert.Equal("unknown", labels["destination_principal"]);
        Assert.Equal("UF", labels["response_flags"]);
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/shop/sa/frontend", true, "spiffe://cluster.local/ns/shop/sa/frontend", "shop", "mutual_tls")]
    [InlineData(null, false, "unknown", "unknown", "none")]
    [InlineData("spiffe://cluster.local/ns/a b/sa/x", true, "unknown", "unknown", "mutual_tls")]
    public void TcpDestinationLabels_PeerFromTheCertificate(string? peer, bool mtls, string principal, string ns, string policy)
    {
        using var services = Services();
        var labels = services.GetRequiredService<IstioRequestMetrics>()
            .TcpDestinationLabels(peer, mtls, ResponseFlags.None)
            .ToDictionary(l => l.Key, l => (string?)l.Value);

        Assert.Equal(IstioTcpLabels.Order(StringComparer.Ordinal), labels.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("destination", labels["reporter"]);
        Assert.Equal("tcp", labels["request_protocol"]);
        Assert.Equal(principal, labels["source_principal"]);
        Assert.Equal(ns, labels["source_workload_namespace"]);
        Assert.Equal(policy, labels["connection_security_policy"]);
        Assert.Equal("orders.default.svc.cluster.local", labels["destination_service"]);
    }

    private static ServiceProvider Services() => new ServiceCollection()
        .AddMeshTelemetry()
        .Configure<ServiceMeshOptions>(options => options.Service = "orders")
        .BuildServiceProvider();
}
