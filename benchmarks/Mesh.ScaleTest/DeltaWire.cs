using Google.Protobuf;
using Grpc.Core;
using Mesh.Xds.Envoy.Config.Core.V3;

namespace Mesh.ScaleTest;

/// <summary>A DeltaDiscoveryRequest (envoy.service.discovery.v3), the fields a client sends.</summary>
internal sealed record DeltaRequest(string TypeUrl)
{
    public Node? Node { get; init; }

    public IReadOnlyList<string> Subscribe { get; init; } = [];

    public IReadOnlyList<string> Unsubscribe { get; init; } = [];

    public IReadOnlyDictionary<string, string> InitialResourceVersions { get; init; } = new Dictionary<string, string>();

    public string ResponseNonce { get; init; } = string.Empty;
}

/// <summary>One <c>Resource</c> of a DeltaDiscoveryResponse: name, version and the resource (an Any's type URL and bytes).</summary>
internal sealed record DeltaResource(string Name, string Version, string TypeUrl, ByteString Value, int Size);

/// <summary>A DeltaDiscoveryResponse (envoy.service.discovery.v3), the fields a client reads, and its size on the wire.</summary>
internal sealed record DeltaResponse(string SystemVersionInfo, string TypeUrl, string Nonce, IReadOnlyList<DeltaResource> Resources, IReadOnlyList<string> RemovedResources, int Size);

/// <summary>
/// The incremental ADS call (DeltaAggregatedResources), encoded by hand from the field numbers the xDS protocol gives
/// (envoy/service/discovery/v3/discovery.proto; /work/shared/reference/xds.md §1), so this harness does not depend on
/// generated delta types: it builds against a Mesh.Xds that has not declared them yet and speaks to any server that
/// serves them. Unknown fields of a response are skipped.
/// </summary>
internal static class DeltaWire
{
    // DeltaDiscoveryRequest
    private const int RequestNode = 1;
    private const int RequestTypeUrl = 2;
    private const int RequestSubscribe = 3;
    private const int RequestUnsubscribe = 4;
    private const int RequestInitialVersions = 5;
    private const int RequestNonce = 6;

    // DeltaDiscoveryResponse
    private const int ResponseSystemVersion = 1;
    private const int ResponseResources = 2;
    private const int ResponseTypeUrl = 4;
    private const int ResponseNonce = 5;
    private const int ResponseRemoved = 6;

    // Resource, and the Any inside it
    private const int ResourceVersion = 1;
    private const int ResourceAny = 2;
    private const int ResourceName = 3;
    private const int AnyTypeUrl = 1;
    private const int AnyValue = 2;

    public static readonly Method<DeltaRequest, DeltaResponse> Method = new(
        MethodType.DuplexStreaming,
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        "DeltaAggregatedResources",
        Marshallers.Create<DeltaRequest>(Serialize, _ => throw new NotSupportedException("a client never reads a DeltaDiscoveryRequest")),
        Marshallers.Create<DeltaResponse>(_ => throw new NotSupportedException("a client never writes a DeltaDiscoveryResponse"), Deserialize));

    public static byte[] Serialize(DeltaRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        if (request.Node is { } node)
        {
            output.WriteTag(RequestNode, WireFormat.WireType.LengthDelimited);
            output.WriteMessage(node);
        }

        WriteString(output, RequestTypeUrl, request.TypeUrl);
        foreach (var name in request.Subscribe)
        {
            output.WriteTag(RequestSubscribe, WireFormat.WireType.LengthDelimited);
            output.WriteString(name);
        }

        foreach (var name in request.Unsubscribe)
        {
            output.WriteTag(RequestUnsubscribe, WireFormat.WireType.LengthDelimited);
            output.WriteString(name);
        }

        foreach (var (name, version) in request.InitialResourceVersions)
        {
            // A map entry is a message with key = 1 and value = 2.
            output.WriteTag(RequestInitialVersions, WireFormat.WireType.LengthDelimited);
            output.WriteLength(CodedOutputStream.ComputeStringSize(name) + CodedOutputStream.ComputeStringSize(version) + 2);
            output.WriteTag(1, WireFormat.WireType.LengthDelimited);
            output.WriteString(name);
            output.WriteTag(2, WireFormat.WireType.LengthDelimited);
            output.WriteString(version);
        }

        WriteString(output, RequestNonce, request.ResponseNonce);
        output.Flush();
        return buffer.ToArray();
    }

    public static DeltaResponse Deserialize(byte[] payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        var input = new CodedInputStream(payload);
        string systemVersion = string.Empty, typeUrl = string.Empty, nonce = string.Empty;
        var resources = new List<DeltaResource>();
        var removed = new List<string>();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case ResponseSystemVersion when IsLengthDelimited(tag): systemVersion = input.ReadString(); break;
                case ResponseTypeUrl when IsLengthDelimited(tag): typeUrl = input.ReadString(); break;
                case ResponseNonce when IsLengthDelimited(tag): nonce = input.ReadString(); break;
                case ResponseRemoved when IsLengthDelimited(tag): removed.Add(input.ReadString()); break;
                case ResponseResources when IsLengthDelimited(tag):
                    var bytes = input.ReadBytes();
                    resources.Add(ReadResource(bytes));
                    break;
                default: input.SkipLastField(); break;
            }
        }

        return new DeltaResponse(systemVersion, typeUrl, nonce, resources, removed, payload.Length);
    }

    private static DeltaResource ReadResource(ByteString bytes)
    {
        var input = bytes.CreateCodedInput();
        string name = string.Empty, version = string.Empty, typeUrl = string.Empty;
        var value = ByteString.Empty;
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case ResourceName when IsLengthDelimited(tag): name = input.ReadString(); break;
                case ResourceVersion when IsLengthDelimited(tag): version = input.ReadString(); break;
                case ResourceAny when IsLengthDelimited(tag):
                    var any = input.ReadBytes().CreateCodedInput();
                    uint anyTag;
                    while ((anyTag = any.ReadTag()) != 0)
                    {
                        switch (WireFormat.GetTagFieldNumber(anyTag))
                        {
                            case AnyTypeUrl when IsLengthDelimited(anyTag): typeUrl = any.ReadString(); break;
                            case AnyValue when IsLengthDelimited(anyTag): value = any.ReadBytes(); break;
                            default: any.SkipLastField(); break;
                        }
                    }

                    break;
                default: input.SkipLastField(); break;
            }
        }

        return new DeltaResource(name, version, typeUrl, value, bytes.Length);
    }

    private static bool IsLengthDelimited(uint tag) => WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited;

    private static void WriteString(CodedOutputStream output, int field, string value)
    {
        if (value.Length > 0)
        {
            output.WriteTag(field, WireFormat.WireType.LengthDelimited);
            output.WriteString(value);
        }
    }
}
