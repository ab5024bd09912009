using Mesh.Sidecar.Hosting;
using Microsoft.AspNetCore.Http;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>Only chunked framing passes; any other transfer coding is answered 501 rather than dropped.</summary>
public sealed class TransferCodingTests
{
    [Theory]
    [InlineData("gzip, chunked", "gzip, chunked")]
    [InlineData("chunked, chunked", "chunked, chunked")]
    [InlineData("identity", "identity")]
    [InlineData("x-custom,chunked", "x-custom,chunked")]
    public void UnsupportedTransferCoding_AnythingButChunked_IsNamed(string header, string expected)
    {
        var context = new DefaultHttpContext();
        context.Request.Headers.TransferEncoding = header;

        Assert.Equal(expected, SidecarHost.UnsupportedTransferCoding(context.Request));
    }

    [Theory]
    [InlineData("chunked")]
    [InlineData("Chunked")]
    [InlineData(" CHUNKED ")]
    public void UnsupportedTransferCoding_Chunked_Passes(string header)
    {
        var context = new DefaultHttpContext();
        context.Request.Headers.TransferEncoding = header;

        Assert.Null(SidecarHost.UnsupportedTransferCoding(context.Request));
        Assert.Null(SidecarHost.UnsupportedTransferCoding(new DefaultHttpContext().Request));
    }
}
