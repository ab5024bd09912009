using System.Globalization;
using Grpc.Core;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Envoy.Config.Core.V3;

namespace Mesh.ControlPlane.Xds;

internal sealed record NackInfo(string TypeUrl, string Version, string Nonce, string Message, DateTimeOffset At);

internal sealed record ClientInfo(
    string Id,
    string Peer,
    DateTimeOffset ConnectedAt,
    string Namespace,
    string? Identity,
    string? CertificateSerial,
    DateTimeOffset? CertificateNotAfter,
    IReadOnlyDictionary<string, IReadOnlyList<string>> Subscriptions,
    IReadOnlyDictionary<string, string> Acked,
    IReadOnlyList<NackInfo> Nacks);

/// <summary>The serial number and end of validity of the certificate an ADS stream was opened with.</summary>
internal sealed record ClientCertificateInfo(string Serial, DateTimeOffset NotAfter);

/// <summary>
/// What one ADS stream is apart from its wire variant: who the client is (its <see cref="AdsClientView"/>, adopted from the
/// first node it sends), the NACKs it sent, the connected-clients metric, and the stream's run from the first request to
/// its end. <see cref="AdsConnection"/> (state of the world) and <see cref="DeltaAdsConnection"/> (incremental) each hold
/// one, so the rules and logs here exist once.
/// </summary>
/// <remarks>
/// Per-type subscription state is the connections' own; it and <see cref="View"/> and the NACKs are guarded by
/// <see cref="Gate"/>, which /debug/clients takes to describe the stream while its loop runs.
/// </remarks>
internal sealed partial class AdsClientSession
{
    /// <summary>
    /// The longest resource name (or version) a client may send: Istio's longest names (<c>outbound|port|subset|fqdn</c>,
    /// a DNS name at most 253 characters) stay far below it, and a delta stream keeps what it is sent until unsubscribed.
    /// </summary>
    public const int MaxResourceNameLength = 1024;

    private const int MaxNacksKept = 20;

    private readonly string _variant;
    private readonly List<NackInfo> _nacks = [];
    private string? _versionLabel;
    private bool _nodeAdopted;

    public AdsClientSession(
        string variant, long id, string peer, XdsPublisher publisher, TimeProvider time, ILogger logger, string? identity, AdsLimits? limits,
        ClientCertificateInfo? certificate, ControlPlaneMetrics? metrics)
    {
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _variant = variant;
        Id = id;
        Peer = peer;
        Publisher = publisher;
        Time = time;
        Logger = logger;
        Identity = identity;
        Limits = limits ?? AdsLimits.Default;
        Certificate = certificate;
        Metrics = metrics;
        ConnectedAt = time.GetUtcNow();
        View = AdsClientView.Unknown($"{variant}-stream-{id.ToString(CultureInfo.InvariantCulture)}", identity, logger);
    }

    public long Id { get; }

    public string Peer { get; }

    public DateTimeOffset ConnectedAt { get; }

    /// <summary>The client certificate's SPIFFE ID; null on the plaintext port.</summary>
    public string? Identity { get; }

    /// <summary>The client certificate the stream was opened with (shown by /debug/clients); null on the plaintext port.</summary>
    public ClientCertificateInfo? Certificate { get; }

    public XdsPublisher Publisher { get; }

    public TimeProvider Time { get; }

    public ILogger Logger { get; }

    public AdsLimits Limits { get; }

    public ControlPlaneMetrics? Metrics { get; }

    public Lock Gate { get; } = new();

    /// <summary>Who the client is and what it may get; replaced once, when its node arrives.</summary>
    public AdsClientView View { get; private set; }

    /// <summary>How logs name this client: its node id, else the stream.</summary>
    public string ClientId => View.ClientId;

    /// <summary>
    /// Runs the stream's single loop (<see cref="AdsStreamLoop{TRequest}"/>: requests and snapshot wake-ups) until the client
    /// ends it or <paramref name="cancellationToken"/> fires; rethrows the RpcException that ended it (RESOURCE_EXHAUSTED
    /// past a limit, DEADLINE_EXCEEDED past the write timeout) after logging it.
    /// </summary>
    public async Task RunAsync<TRequest>(
        IAsyncStreamReader<TRequest> requests, string requestKind, Func<CancellationToken, Task> onWake, Func<TRequest, CancellationToken, Task> onRequest,
        CancellationToken cancellationToken)
        where TRequest : class
    {
        ArgumentNullException.ThrowIfNull(requests);
        var loop = new AdsStreamLoop<TRequest>(Limits.MaxPendingRequests, requestKind);
        using var subscription = Publisher.Subscribe(loop.Wake);
        RpcException? failure;
        try
        {
            failure = await loop.RunAsync(requests, onWake, onRequest, ex => LogStreamClosed(Logger, _variant, ClientId, ex), cancellationToken);
        }
        finally
        {
            if (_versionLabel is not null)
            {
                Metrics?.ClientDisconnected(_versionLabel);
            }
        }

        if (failure is not null)
        {
            LogStreamFailed(Logger, _variant, ClientId, failure.StatusCode, failure.Status.Detail);
            throw failure;
        }
    }

    /// <summary>
    /// Handles what every request of either variant starts with: adopts the client's node (the first one with an id) and
    /// checks the type. False, after a warning, for a type the control plane does not serve.
    /// </summary>
    public bool Accept(Node? node, string typeUrl)
    {
        // The node's first appearance only (xds_protocol: sent on the first request): a view changed later would leave the
        // per-type state built for the old one, and each adoption logs at Information.
        if (node is not null && !_nodeAdopted)
        {
            _nodeAdopted = true;
            lock (Gate)
            {
                View = AdsClientView.For(node, Identity, Logger);
            }

            if (Metrics is not null)
            {
                _versionLabel = Metrics.ClientConnected(AdsNode.VersionOf(node));
            }

            LogConnected(Logger, _variant, ClientId, Peer, View.Namespace);
        }

        if (TypeUrls.IsKnown(typeUrl))
        {
            return true;
        }

        LogUnknownType(Logger, _variant, ClientId, AdsNode.Printable(typeUrl));
        return false;
    }

    /// <summary>
    /// Checks names a request sends (<paramref name="what"/> says where, for the error): each at most
    /// <see cref="MaxResourceNameLength"/> characters (INVALID_ARGUMENT), and at most <c>AdsMaxResourceNamesPerType</c> of
    /// them naming nothing that exists (RESOURCE_EXHAUSTED). Names of existing resources cost the stream nothing the
    /// snapshot does not hold already, so a client subscribing to every resource of a mesh larger than the limit (a
    /// wildcard Mesh.Client asks for every assignment by name; a reconnecting delta client lists all it has) is never refused.
    /// </summary>
    public void CheckNames(string typeUrl, ICollection<string> names, string what)
    {
        ArgumentNullException.ThrowIfNull(names);
        foreach (var name in names)
        {
            if (name.Length > MaxResourceNameLength)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument,
                    $"{what} holds a {typeUrl} name of {name.Length.ToString(CultureInfo.InvariantCulture)} characters; resource names are at most {MaxResourceNameLength.ToString(CultureInfo.InvariantCulture)}"));
            }
        }

        var limit = Limits.MaxResourceNamesPerType;
        if (names.Count <= limit)
        {
            return;
        }

        var snapshot = Publisher.Current;
        var unknown = names.Count(n => !View.Exists(typeUrl, n, snapshot));
        if (unknown > limit)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"{what} holds {unknown.ToString(CultureInfo.InvariantCulture)} {typeUrl} names of resources that do not exist; an ADS stream may subscribe to at most {limit.ToString(CultureInfo.InvariantCulture)} such names per type (ControlPlane:AdsMaxResourceNamesPerType)"));
        }
    }

    /// <summary>Keeps (the last few) and logs a NACK; the caller holds <see cref="Gate"/>. Client-supplied text is made printable first.</summary>
    public NackInfo RecordNack(string typeUrl, string version, string nonce, string message)
    {
        var nack = new NackInfo(typeUrl, AdsNode.Printable(version), AdsNode.Printable(nonce), AdsNode.Printable(message), Time.GetUtcNow());
        _nacks.Add(nack);
        if (_nacks.Count > MaxNacksKept)
        {
            _nacks.RemoveAt(0);
        }

        LogNack(Logger, _variant, ClientId, typeUrl, nack.Version, nack.Nonce, nack.Message);
        return nack;
    }

    /// <summary>What /debug/clients shows for the stream, from its per-type state (subscriptions with <c>*</c> first for a wildcard, the version last ACKed).</summary>
    public ClientInfo Describe<TState>(IReadOnlyDictionary<string, TState> types, Func<TState, bool> wildcard, Func<TState, IEnumerable<string>> names, Func<TState, string?> acked)
    {
        ArgumentNullException.ThrowIfNull(types);
        lock (Gate)
        {
            return new ClientInfo(
                ClientId,
                Peer,
                ConnectedAt,
                View.Namespace,
                Identity,
                Certificate?.Serial,
                Certificate?.NotAfter,
                types.ToDictionary(
                    t => t.Key,
                    t => (IReadOnlyList<string>)(wildcard(t.Value) ? ["*", .. names(t.Value).Order(StringComparer.Ordinal)] : [.. names(t.Value).Order(StringComparer.Ordinal)]),
                    StringComparer.Ordinal),
                types.Select(t => (t.Key, Acked: acked(t.Value))).Where(t => t.Acked is not null).ToDictionary(t => t.Key, t => t.Acked!, StringComparer.Ordinal),
                [.. _nacks]);
        }
    }

    [LoggerMessage(EventId = 2, EventName = "AdsStreamFailed", Level = LogLevel.Warning, Message = "ADS stream ({Variant}) of {ClientId} ended with {StatusCode}: {Detail}")]
    private static partial void LogStreamFailed(ILogger logger, string variant, string clientId, StatusCode statusCode, string detail);

    [LoggerMessage(EventId = 3, EventName = "AdsConnected", Level = LogLevel.Information, Message = "ADS client {ClientId} connected from {Peer} (namespace {Namespace}, {Variant} stream)")]
    private static partial void LogConnected(ILogger logger, string variant, string clientId, string peer, string @namespace);

    [LoggerMessage(EventId = 4, EventName = "AdsStreamClosed", Level = LogLevel.Debug, Message = "ADS stream ({Variant}) of {ClientId} closed")]
    private static partial void LogStreamClosed(ILogger logger, string variant, string clientId, Exception exception);

    [LoggerMessage(EventId = 5, EventName = "AdsUnknownType", Level = LogLevel.Warning, Message = "ADS client {ClientId} ({Variant} stream) asked for unsupported type {TypeUrl}")]
    private static partial void LogUnknownType(ILogger logger, string variant, string clientId, string typeUrl);

    [LoggerMessage(EventId = 7, EventName = "AdsNack", Level = LogLevel.Warning, Message = "ADS client {ClientId} ({Variant} stream) NACKed {TypeUrl} version {Version} nonce {Nonce}: {Message}")]
    private static partial void LogNack(ILogger logger, string variant, string clientId, string typeUrl, string version, string nonce, string message);
}

/// <summary>What both ADS stream variants expose and read of their <see cref="AdsClientSession"/>.</summary>
internal abstract class AdsStream(AdsClientSession session)
{
    public long Id => Session.Id;

    /// <summary>The client certificate's SPIFFE ID; null on the plaintext port.</summary>
    public string? Identity => Session.Identity;

    protected AdsClientSession Session { get; } = session;

    protected XdsPublisher Publisher => Session.Publisher;

    protected ILogger Logger => Session.Logger;

    protected ControlPlaneMetrics? Metrics => Session.Metrics;

    protected string ClientId => Session.ClientId;

    protected AdsClientView View => Session.View;
}

