using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>Per-stream state is bounded; client-supplied text is made safe before it is logged.</summary>
public sealed class AdsConnectionLimitsTests
{
    [Fact]
    public async Task RunAsync_MoreRequestsWaitingThanTheLimit_ResourceExhaustedNamingTheKey()
    {
        var options = new ControlPlaneOptions();
        using var publisher = new XdsPublisher(new ConfigStore(NullLogger<ConfigStore>.Instance), options, TimeProvider.System, NullLogger<XdsPublisher>.Instance);
        var connection = new AdsConnection(1, "test", publisher, TimeProvider.System, NullLogger.Instance, identity: null, new AdsLimits(MaxPendingRequests: 4, MaxResourceNamesPerType: 100));

        // The first response never finishes writing (a client that does not read): the requests behind it pile up.
        var requests = new Requests(Enumerable.Range(0, 10).Select(i => new DiscoveryRequest { TypeUrl = TypeUrls.Cluster, ResourceNames = { $"c{i}" } }));
        var responses = new StuckWriter();

        var ex = await Assert.ThrowsAsync<RpcException>(() => connection.RunAsync(requests, responses, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Equal("more than 4 DiscoveryRequests are waiting on this ADS stream (ControlPlane:AdsMaxPendingRequests); read the responses before sending more", ex.Status.Detail);
    }

    [Theory]
    [InlineData("plain message", "plain message")]
    [InlineData("line1\r\nfake: log line\u0007", "line1??fake: log line?")]
    [InlineData("rtl\u202Eevil\u2028next", "rtl?evil?next")]
    public void Printable_ControlCharacters_Replaced(string input, string expected) =>
        Assert.Equal(expected, AdsNode.Printable(input));

    [Fact]
    public void Printable_LongText_TruncatedNamingWhatWasCut()
    {
        var text = AdsNode.Printable(new string('x', 5000));

        Assert.Equal(new string('x', 512) + "…(4488 more characters)", text);
    }

    private sealed class Requests(IEnumerable<DiscoveryRequest> items) : IAsyncStreamReader<DiscoveryRequest>
    {
        private readonly Queue<DiscoveryRequest> _items = new(items);

        public DiscoveryRequest Current { get; private set; } = null!;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (_items.TryDequeue(out var next))
            {
                Current = next;
                return true;
            }

            // The client keeps the stream open.
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return false;
        }
    }

    private sealed class StuckWriter : IServerStreamWriter<DiscoveryResponse>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(DiscoveryResponse message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(DiscoveryResponse message, CancellationToken cancellationToken)
        {
            return Task.Delay(Timeout.Infinite, cancellationToken);
        }
    }
}
