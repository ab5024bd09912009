using Mesh.Client.Telemetry;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>Which content types are gRPC proper (counted as gRPC: framing, messages, status in trailers).</summary>
public sealed class GrpcContentTypeTests
{
    [Theory]
    [InlineData("application/grpc")]
    [InlineData("Application/GRPC")]
    [InlineData("application/grpc+proto")]
    [InlineData("application/grpc+json")]
    [InlineData("application/grpc; charset=utf-8")]
    [InlineData("application/grpc+proto;foo=bar")]
    [InlineData(" application/grpc ")]
    public void Is_GrpcProper_True(string contentType) => Assert.True(GrpcContentType.Is(contentType));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("application/grpc-web")]
    [InlineData("application/grpc-web+proto")]
    [InlineData("application/grpc-web-text")]
    [InlineData("application/grpc-web-text+proto")]
    [InlineData("application/grpc+")]
    [InlineData("application/grpcx")]
    [InlineData("application/json")]
    [InlineData("text/plain; x=application/grpc")]
    public void Is_NotGrpcProper_False(string? contentType) => Assert.False(GrpcContentType.Is(contentType));
}
