using Grpc.Core;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Status = Mesh.Xds.Google.Rpc.Status;

namespace Mesh.Client.Xds;

internal sealed partial class XdsClient
{
    /// <summary>
    /// The state-of-the-world wire (<c>StreamAggregatedResources</c>): every request carries the full name set of its type,
    /// a response is validated as a whole and ACKed or NACKed as a whole (a rejected response changes nothing), and an LDS
    /// or CDS response lists every subscribed resource, so one it lacks is deleted.
    /// </summary>
    private sealed class SotwStream(XdsClient client, AggregatedDiscoveryService.AggregatedDiscoveryServiceClient ads, CancellationToken cancellationToken) : XdsStream
    {
        private readonly AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> _call = ads.StreamAggregatedResources(cancellationToken: cancellationToken);

        public override bool ConnectedOnceSent => false;

        public override Task<bool> MoveNextAsync(CancellationToken cancellationToken) => _call.ResponseStream.MoveNext(cancellationToken);

        public override void Dispose() => _call.Dispose();

        /// <summary>
        /// One request naming every resource wanted (wildcard: none, or <c>*</c> plus this workload's inbound listeners),
        /// with the last accepted version and the last response's nonce.
        /// </summary>
        public override async Task SendAsync(TypeState state, Status? error, CancellationToken cancellationToken)
        {
            var request = new DiscoveryRequest
            {
                TypeUrl = state.TypeUrl,
                VersionInfo = state.Version,
                ResponseNonce = state.Nonce,
                ErrorDetail = error,
            };

            if (state.IsWildcard)
            {
                // Wildcard plus this workload's inbound listeners, which a wildcard does not cover.
                if (state.TypeUrl == XdsTypeUrls.Listener && client._inbound.Names is { Count: > 0 } inboundNames)
                {
                    request.ResourceNames.Add("*");
                    request.ResourceNames.Add(inboundNames);
                }
            }
            else
            {
                // An empty list means wildcard only when no names were ever sent; RDS and EDS always send names.
                if (state.Subscribed.Count == 0 && state.SentNames is null)
                {
                    return;
                }

                request.ResourceNames.Add(state.Subscribed);
                state.AwaitingAnswer |= state.SentNames is null ? state.Subscribed.Count > 0 : !state.Subscribed.IsSubsetOf(state.SentNames);
                state.SentNames = state.Subscribed;
            }

            state.SentNonce = request.ResponseNonce;
            state.SentVersion = request.VersionInfo;
            if (Sent == 0)
            {
                request.Node = client._node ??= client._nodeFactory();
            }

            await _call.RequestStream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
            Sent++;
        }

        /// <summary>
        /// One request that adds names in flight at a time: a second one could reach the server after its answer was sent,
        /// be ignored there as stale, and make that answer look like "does not exist" for the second one's names. The ACK
        /// of the answer carries them instead.
        /// </summary>
        public override bool CanSendListenerNames(TypeState state, SortedSet<string> names) =>
            !state.AwaitingAnswer || (state.SentNames is not null && names.IsSubsetOf(state.SentNames));

        public override async Task HandleCurrentAsync(CancellationToken cancellationToken)
        {
            var response = _call.ResponseStream.Current;
            if (!client._types.TryGetValue(response.TypeUrl, out var state))
            {
                Log.UnknownType(client._logger, response.TypeUrl);
                return;
            }

            state.Nonce = response.Nonce;
            var errors = new List<string>();
            var decoded = XdsResourceDecoder.DecodeAll(response.TypeUrl, response.Resources, errors);
            if (decoded is null)
            {
                await SendAsync(state, client.Reject(state, response.VersionInfo, errors), cancellationToken).ConfigureAwait(false);
                return;
            }

            var onDemand = client._onDemand;
            if (response.TypeUrl == XdsTypeUrls.Listener)
            {
                // This workload's inbound listeners are its inbound policy, not outbound config: they live in their own store.
                client._inbound.Replace(decoded.Values.OfType<Authorization.InboundPolicy>());
                decoded = decoded.Where(p => p.Value is not Authorization.InboundPolicy).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            }

            if (response.TypeUrl == XdsTypeUrls.Listener && onDemand.Enabled)
            {
                // Our control plane answers every LDS request that adds names with the full subscribed set, so a response to
                // the request that named a host and lacks it means "does not exist". A response is that answer when the last
                // request named the host and either opened the stream (never stale) or acknowledged the very version the
                // response carries: a push of newer config that crossed the request (which the server then ignored as stale)
                // carries another version, and its ACK, which names the host again, gets the real answer. Other servers may
                // never answer for a missing name: the subscription timeout covers them.
                var sentNames = state.SentNames;
                var fromStreamStart = state.SentNonce.Length == 0;
                var sameVersion = state.SentVersion == response.VersionInfo;
                onDemand.OnListeners(
                    decoded.Keys.ToHashSet(StringComparer.Ordinal),
                    name => sentNames is not null && sentNames.Contains(name) && (fromStreamStart || sameVersion));
            }

            state.AwaitingAnswer = false;
            List<string>? recheck = null;
            if (response.TypeUrl == XdsTypeUrls.Listener && onDemand.Enabled)
            {
                // Hosts added (or found absent) meanwhile go out with this response's ACK.
                var desired = client.DesiredListenerNames();
                if (state.SentNames is { } sent && state.SentNonce.Length > 0 && state.SentVersion != response.VersionInfo)
                {
                    // A response of newer config that lacks a pending host may have crossed the request naming it, or answered
                    // it: no way to tell. The ACK leaves those hosts out and a second request names them again, which the
                    // server must answer with this very version: that answer is the one that counts.
                    recheck = [.. sent.Where(n => !decoded.ContainsKey(n) && desired.Contains(n) && onDemand.IsPending(n))];
                    desired.ExceptWith(recheck);
                    if (recheck.Count > 0)
                    {
                        // The ACK adds no name either: an ACK that adds one is answered, and that answer (lacking the pending
                        // host, named in the second request by then) would make the second request stale and be taken for it.
                        desired.IntersectWith(sent);
                    }
                }

                client.ApplyListenerNames(desired);
            }

            lock (client._types)
            {
                if (state.IsWildcard)
                {
                    // LDS and CDS: a state-of-the-world response lists every resource; a missing one is deleted.
                    state.Resources = decoded;
                }
                else if (state.IsFullSet)
                {
                    // LDS and CDS by name: the response lists every subscribed resource that exists.
                    state.Resources = decoded.Where(p => state.Subscribed.Contains(p.Key)).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
                }
                else
                {
                    foreach (var (name, value) in decoded)
                    {
                        if (state.Subscribed.Contains(name))
                        {
                            state.Resources[name] = value;
                        }
                    }
                }

                state.Version = response.VersionInfo;
                state.Received = true;
            }

            Log.Accepted(client._logger, XdsTypeUrls.KindOf(response.TypeUrl), response.VersionInfo, decoded.Count);
            await SendAsync(state, null, cancellationToken).ConfigureAwait(false);
            if (recheck is { Count: > 0 })
            {
                client.ApplyListenerNames(client.DesiredListenerNames());
                await SendAsync(state, null, cancellationToken).ConfigureAwait(false);
            }

            await client.FollowAndPublishAsync(this, state, cancellationToken).ConfigureAwait(false);
        }
    }
}
