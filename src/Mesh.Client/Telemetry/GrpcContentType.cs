namespace Mesh.Client.Telemetry;

/// <summary>
/// Whether a content type is gRPC proper: <c>application/grpc</c> or <c>application/grpc+&lt;subtype&gt;</c> (e.g.
/// <c>+proto</c>), with or without parameters. gRPC-Web (<c>application/grpc-web</c>, <c>application/grpc-web-text</c>)
/// is not: its framing differs (base64 in -text) and its status travels in the body, so it counts as HTTP.
/// </summary>
internal static class GrpcContentType
{
    private const string Grpc = "application/grpc";

    public static bool Is(string? contentType)
    {
        if (contentType is null)
        {
            return false;
        }

        var type = contentType.AsSpan();
        var parameters = type.IndexOf(';');
        type = (parameters >= 0 ? type[..parameters] : type).Trim();
        return type.StartsWith(Grpc, StringComparison.OrdinalIgnoreCase)
            && (type.Length == Grpc.Length || (type[Grpc.Length] == '+' && type.Length > Grpc.Length + 1));
    }
}
