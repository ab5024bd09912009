using Grpc.Core;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ScaleTest;

/// <summary>
/// A state-of-the-world ADS client (StreamAggregatedResources): each request carries the full list of names of its type
/// (none for a wildcard), every response is ACKed with its version and nonce, and LDS/CDS responses replace the whole
/// set while RDS/EDS responses may carry only some resources.
/// </summary>
internal sealed class SotwClient(int index, bool onDemand, IReadOnlyCollection<string> listeners, ScaleProbe probe)
    : SimulatedClient(index, onDemand, listeners, probe)
{
    private IClientStreamWriter<DiscoveryRequest>? _requests;
    private bool _sentNode;

    protected override string MethodName => "StreamAggregatedResources";

    protected override async Task<bool> RunStreamAsync(CallInvoker invoker, long openedAt, CancellationToken cancellationToken)
    {
        var client = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(invoker);
        using var call = client.StreamAggregatedResources(cancellationToken: cancellationToken);
        _requests = call.RequestStream;
        _sentNode = false;

        // LDS and CDS first; RDS and EDS with the names the last stream had, as Mesh.Client resumes.
        foreach (var state in Types.Values)
        {
            if (state.Wildcard || state.Subscribed.Count > 0)
            {
                await SubscribeAsync(state, cancellationToken).ConfigureAwait(false);
            }
        }

        var any = false;
        while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
        {
            any = true;
            var response = call.ResponseStream.Current;
            Received(response.CalculateSize());
            if (!Types.TryGetValue(response.TypeUrl, out var state))
            {
                continue;
            }

            if (state.Wildcard || response.TypeUrl is XdsTypes.Listener or XdsTypes.Cluster)
            {
                // LDS and CDS: the response lists every resource; one that is missing is deleted.
                state.Received.Clear();
            }

            var subscribed = state.Subscribed;
            foreach (var resource in response.Resources)
            {
                var variant = Intern(response.TypeUrl, null, resource.Value);
                if (state.Wildcard || subscribed.Contains(variant.Name))
                {
                    Keep(state, variant, resource.CalculateSize());
                }
            }

            state.Version = response.VersionInfo;
            state.Nonce = response.Nonce;
            state.Responded = true;
            await SubscribeAsync(state, cancellationToken).ConfigureAwait(false); // the ACK
            await FollowAsync(state, openedAt, cancellationToken).ConfigureAwait(false);
        }

        return any;
    }

    protected override async Task SubscribeAsync(TypeState state, CancellationToken cancellationToken)
    {
        var request = new DiscoveryRequest { TypeUrl = state.TypeUrl, VersionInfo = state.Version, ResponseNonce = state.Nonce };
        if (!state.Wildcard)
        {
            request.ResourceNames.Add(state.Ordered);
        }

        if (!_sentNode)
        {
            request.Node = Node;
            _sentNode = true;
        }

        await _requests!.WriteAsync(request, cancellationToken).ConfigureAwait(false);
    }
}
