using Grpc.Core;

namespace Mesh.ScaleTest;

/// <summary>
/// An incremental ADS client (DeltaAggregatedResources, <see cref="DeltaWire"/>): it subscribes and unsubscribes by
/// difference (<c>"*"</c> for the wildcard), keeps what each response adds, drops what it removes, and ACKs each response
/// by its nonce. A new stream subscribes afresh, without <c>initial_resource_versions</c>, so a resync after a restart
/// is measured as a full one.
/// </summary>
internal sealed class DeltaClient(int index, bool onDemand, IReadOnlyCollection<string> listeners, ScaleProbe probe)
    : SimulatedClient(index, onDemand, listeners, probe)
{
    private IClientStreamWriter<DeltaRequest>? _requests;
    private bool _sentNode;

    protected override string MethodName => "DeltaAggregatedResources";

    protected override async Task<bool> RunStreamAsync(CallInvoker invoker, long openedAt, CancellationToken cancellationToken)
    {
        using var call = invoker.AsyncDuplexStreamingCall(DeltaWire.Method, null, new CallOptions(cancellationToken: cancellationToken));
        _requests = call.RequestStream;
        _sentNode = false;
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
            Received(response.Size);
            if (!Types.TryGetValue(response.TypeUrl, out var state))
            {
                continue;
            }

            var subscribed = state.Subscribed;
            foreach (var resource in response.Resources)
            {
                if (state.Wildcard || subscribed.Contains(resource.Name))
                {
                    Keep(state, Intern(response.TypeUrl, resource.Name, resource.Value), resource.Size);
                }
            }

            foreach (var name in response.RemovedResources)
            {
                state.Received.Remove(name);
            }

            state.Version = response.SystemVersionInfo;
            state.Responded = true;
            await WriteAsync(new DeltaRequest(state.TypeUrl) { ResponseNonce = response.Nonce }, cancellationToken).ConfigureAwait(false);
            await FollowAsync(state, openedAt, cancellationToken).ConfigureAwait(false);
        }

        return any;
    }

    protected override async Task SubscribeAsync(TypeState state, CancellationToken cancellationToken)
    {
        if (state.Sent is null)
        {
            // First request of this type on the stream: the explicit wildcard, or every name.
            state.Sent = state.Wildcard ? [] : [.. state.Subscribed];
            await WriteAsync(new DeltaRequest(state.TypeUrl) { Subscribe = state.Wildcard ? ["*"] : state.Ordered }, cancellationToken).ConfigureAwait(false);
            return;
        }

        var subscribe = state.Subscribed.Except(state.Sent).Order(StringComparer.Ordinal).ToList();
        var unsubscribe = state.Sent.Except(state.Subscribed).Order(StringComparer.Ordinal).ToList();
        if (subscribe.Count == 0 && unsubscribe.Count == 0)
        {
            return;
        }

        state.Sent = [.. state.Subscribed];
        await WriteAsync(new DeltaRequest(state.TypeUrl) { Subscribe = subscribe, Unsubscribe = unsubscribe }, cancellationToken).ConfigureAwait(false);
    }

    private async Task WriteAsync(DeltaRequest request, CancellationToken cancellationToken)
    {
        if (!_sentNode)
        {
            request = request with { Node = Node };
            _sentNode = true;
        }

        await _requests!.WriteAsync(request, cancellationToken).ConfigureAwait(false);
    }
}
