using Grpc.Core;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Status = Mesh.Xds.Google.Rpc.Status;

namespace Mesh.Client.Xds;

internal sealed partial class XdsClient
{
    /// <summary>
    /// The incremental wire (<c>DeltaAggregatedResources</c>, xds_protocol "Incremental xDS"): requests subscribe and
    /// unsubscribe by difference (<c>*</c> is the wildcard), a response carries only what changed (<c>resources</c>) and
    /// what is gone or does not exist (<c>removed_resources</c>), and a new stream lists what the client holds in
    /// <c>initial_resource_versions</c> so that only what changed meanwhile comes back.
    /// </summary>
    /// <remarks>
    /// Validation is the state-of-the-world client's (<see cref="XdsResourceDecoder"/>), applied per resource: a response
    /// carries only changes, and the control plane records a resource as sent whether or not it is ACKed, so rejecting the
    /// good resources with the bad one would lose them until they change again. A rejected resource keeps its last good
    /// version, the response is NACKed with every error in <c>error_detail</c>, and the rest of it applies.
    /// </remarks>
    private sealed class DeltaStream(XdsClient client, AggregatedDiscoveryService.AggregatedDiscoveryServiceClient ads, CancellationToken cancellationToken) : XdsStream
    {
        private const string Wildcard = "*";

        private readonly AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> _call = ads.DeltaAggregatedResources(cancellationToken: cancellationToken);

        public override bool ConnectedOnceSent => true;

        public override Task<bool> MoveNextAsync(CancellationToken cancellationToken) => _call.ResponseStream.MoveNext(cancellationToken);

        public override void Dispose() => _call.Dispose();

        /// <summary>
        /// The first request of a type on this stream subscribes to everything wanted (<c>*</c> for a wildcard type) and
        /// lists what the client holds; later ones carry the names added and removed since, and the ACK or NACK of the last
        /// response. Nothing to say: nothing sent.
        /// </summary>
        public override async Task SendAsync(TypeState state, Status? error, CancellationToken cancellationToken)
        {
            var request = new DeltaDiscoveryRequest { TypeUrl = state.TypeUrl };
            var wanted = ExplicitNames(state);
            if (state.SentNames is not { } sent)
            {
                // An empty first request would be the legacy wildcard: a type with no name to want sends nothing yet.
                if (!state.IsWildcard && wanted.Count == 0)
                {
                    return;
                }

                if (state.IsWildcard)
                {
                    request.ResourceNamesSubscribe.Add(Wildcard);
                }

                request.ResourceNamesSubscribe.Add(wanted);
                lock (client._types)
                {
                    request.InitialResourceVersions.Add(state.ResourceVersions!);
                }
            }
            else
            {
                request.ResourceNamesSubscribe.Add(wanted.Where(n => !sent.Contains(n)));
                request.ResourceNamesUnsubscribe.Add(sent.Where(n => !wanted.Contains(n)));
            }

            if (state.Nonce.Length > 0)
            {
                request.ResponseNonce = state.Nonce;
                request.ErrorDetail = error;
                state.Nonce = string.Empty;
            }

            if (state.SentNames is not null && request.ResponseNonce.Length == 0
                && request.ResourceNamesSubscribe.Count == 0 && request.ResourceNamesUnsubscribe.Count == 0)
            {
                return;
            }

            state.SentNames = wanted;
            if (Sent == 0)
            {
                request.Node = client._node ??= client._nodeFactory();
            }

            await _call.RequestStream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
            Sent++;
            Log.DeltaSent(client._logger, XdsTypeUrls.KindOf(state.TypeUrl), request.ResourceNamesSubscribe.Count, request.ResourceNamesUnsubscribe.Count, request.InitialResourceVersions.Count, request.ResponseNonce, request.ErrorDetail is not null);
        }

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
            var accepted = Decode(response, errors);
            var removed = response.RemovedResources.ToHashSet(StringComparer.Ordinal);
            var inboundChanged = false;
            var applied = 0;
            lock (client._types)
            {
                foreach (var (name, (value, version)) in accepted)
                {
                    // Only what this client wants: a resource it did not subscribe to (or just unsubscribed) is not kept.
                    if ((state.IsWildcard || state.Subscribed.Contains(name)) && !removed.Contains(name))
                    {
                        state.Resources[name] = value;
                        state.ResourceVersions![name] = version;
                        inboundChanged |= value is Authorization.InboundPolicy;
                        applied++;
                    }
                }

                foreach (var name in removed)
                {
                    inboundChanged |= state.Resources.Remove(name, out var old) && old is Authorization.InboundPolicy;
                    state.ResourceVersions!.Remove(name);
                }

                if (errors.Count == 0)
                {
                    state.Version = response.SystemVersionInfo;
                    state.Received = true;
                }
            }

            if (inboundChanged)
            {
                // This workload's inbound listeners are its inbound policy: the store gets every port's current one.
                client._inbound.Replace(SnapshotOf(state).OfType<Authorization.InboundPolicy>());
            }

            var onDemand = client._onDemand;
            if (state.TypeUrl == XdsTypeUrls.Listener && onDemand.Enabled)
            {
                // Delta says "does not exist" itself: a subscribed name that does not exist comes back in removed_resources
                // (xds_protocol "Knowing When a Requested Resource Does Not Exist"), whatever crossed the request.
                onDemand.OnListeners(accepted.Keys.Where(n => !removed.Contains(n)).ToHashSet(StringComparer.Ordinal), removed.Contains);
                client.ApplyListenerNames(client.DesiredListenerNames());
            }

            var error = errors.Count == 0 ? null : client.Reject(state, response.SystemVersionInfo, errors);
            if (error is null)
            {
                Log.DeltaAccepted(client._logger, XdsTypeUrls.KindOf(state.TypeUrl), response.SystemVersionInfo, applied, removed.Count);
            }

            await SendAsync(state, error, cancellationToken).ConfigureAwait(false);
            if (applied > 0 || removed.Count > 0 || error is null)
            {
                await client.FollowAndPublishAsync(this, state, cancellationToken).ConfigureAwait(false);
            }
        }

        /// <summary>The names a type subscribes to besides the wildcard: its subscription, or for wildcard LDS this workload's inbound listeners.</summary>
        private SortedSet<string> ExplicitNames(TypeState state)
        {
            if (!state.IsWildcard)
            {
                return state.Subscribed;
            }

            return state.TypeUrl == XdsTypeUrls.Listener && client._inbound.Names is { Count: > 0 } inbound
                ? new SortedSet<string>(inbound, StringComparer.Ordinal)
                : new SortedSet<string>(StringComparer.Ordinal);
        }

        private List<object> SnapshotOf(TypeState state)
        {
            lock (client._types)
            {
                return [.. state.Resources.Values];
            }
        }

        /// <summary>Validates each resource on its own (the decoder's rules); every error names the resource.</summary>
        private static Dictionary<string, (object Value, string Version)> Decode(DeltaDiscoveryResponse response, List<string> errors)
        {
            var kind = XdsTypeUrls.KindOf(response.TypeUrl);
            var accepted = new Dictionary<string, (object, string)>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var shared = new XdsResourceDecoder.SharedValues(); // equal parts of one response are one instance, as for SotW
            for (var i = 0; i < response.Resources.Count; i++)
            {
                var resource = response.Resources[i];
                var where = $"{kind} resources[{i}] '{resource.Name}'";
                if (!seen.Add(resource.Name))
                {
                    errors.Add($"{where}: the name appears more than once in the response");
                    accepted.Remove(resource.Name);
                    continue;
                }

                if (resource.Resource_ is not { } any)
                {
                    errors.Add($"{where}: resource is required (a resource that is gone belongs in removed_resources)");
                    continue;
                }

                var own = new List<string>();
                var decoded = XdsResourceDecoder.DecodeAll(response.TypeUrl, [any], own, shared, _ => where);
                if (decoded is null)
                {
                    errors.AddRange(own);
                    continue;
                }

                var (name, value) = decoded.Single();
                if (resource.Name.Length > 0 && !string.Equals(resource.Name, name, StringComparison.Ordinal))
                {
                    errors.Add($"{where}: the resource inside is named '{name}'");
                    continue;
                }

                accepted[name] = (value, resource.Version);
            }

            return accepted;
        }
    }
}
