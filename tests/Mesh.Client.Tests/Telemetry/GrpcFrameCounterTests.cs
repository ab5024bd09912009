using System.Buffers;
using System.Buffers.Binary;
using Mesh.Client.Telemetry;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>The gRPC length-prefixed framing counter, fed the same bodies in every chunking.</summary>
public sealed class GrpcFrameCounterTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(4096)]
    public void Messages_AnyChunking_CountedOnce(int chunk)
    {
        // Small, zero-length and large (a length needing all four prefix bytes' worth: > 65535) messages, compressed or not.
        var body = Body((0, 10), (0, 0), (1, 3), (0, 70_000), (0, 0), (1, 1));

        var counter = Feed(body, chunk);

        Assert.Equal(6, counter.Messages);
        Assert.Equal(body.Length, counter.Bytes);

        // It ended on a frame's boundary: the next byte is a new message's flag.
        counter.Observe(Body((0, 1)));
        Assert.Equal(7, counter.Messages);
    }

    [Fact]
    public void Prefix_SplitByteByByte_ThenPayload_CountsOneMessage()
    {
        var body = Body((0, 300));
        var counter = default(GrpcFrameCounter);
        for (var i = 0; i < 5; i++)
        {
            counter.Observe(body.AsSpan(i, 1));
            Assert.Equal(1, counter.Messages);
        }

        counter.Observe(body.AsSpan(5));
        Assert.Equal(1, counter.Messages);
        counter.Observe(Body((0, 0)));
        Assert.Equal(2, counter.Messages);
    }

    [Fact]
    public void ZeroLengthMessages_BackToBack_EachCounted()
    {
        var counter = Feed(Body((0, 0), (0, 0), (0, 0)), 5);
        Assert.Equal(3, counter.Messages);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(50)]
    public void PartialFrameAtEnd_CountedAsEnvoyCountsIt(int cut)
    {
        // Envoy's FrameInspector counts a frame at its first byte: a body cut inside the prefix or payload still counts it.
        var body = Body((0, 10), (0, 100));
        var counter = Feed(body.AsSpan(0, 15 + cut).ToArray(), 4);

        Assert.Equal(2, counter.Messages);

        // Still inside the second frame: a 0 byte is its prefix's or payload's, not a new message's flag.
        counter.Observe([0]);
        Assert.Equal(2, counter.Messages);
    }

    [Fact]
    public void NotGrpcFraming_StopsCounting_BytesStillCounted()
    {
        var body = Body((0, 4)).Concat("HTTP"u8.ToArray()).Concat(Body((0, 4))).ToArray();
        var counter = Feed(body, 3);

        Assert.Equal(1, counter.Messages);
        Assert.Equal(body.Length, counter.Bytes);
    }

    [Fact]
    public void Sequence_MultipleSegments_SameAsContiguous()
    {
        var body = Body((0, 20), (1, 0), (0, 7));
        var first = new Segment(body.AsMemory(0, 3));
        var last = first.Append(body.AsMemory(3, 20)).Append(body.AsMemory(23));
        var counter = default(GrpcFrameCounter);
        counter.Observe(new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length));

        Assert.Equal((3, body.Length), (counter.Messages, counter.Bytes));
    }

    private static GrpcFrameCounter Feed(byte[] body, int chunk)
    {
        var counter = default(GrpcFrameCounter);
        for (var offset = 0; offset < body.Length; offset += chunk)
        {
            counter.Observe(body.AsSpan(offset, Math.Min(chunk, body.Length - offset)));
        }

        return counter;
    }

    private static byte[] Body(params (byte Flag, int Length)[] messages)
    {
        var body = new List<byte>();
        foreach (var (flag, length) in messages)
        {
            var prefix = new byte[5];
            prefix[0] = flag;
            BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), (uint)length);
            body.AddRange(prefix);

            // Payload bytes that look like prefixes (0 and 1) must not be read as frames.
            body.AddRange(Enumerable.Range(0, length).Select(i => (byte)(i % 2)));
        }

        return [.. body];
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
