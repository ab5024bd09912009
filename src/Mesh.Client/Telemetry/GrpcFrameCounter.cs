using System.Buffers;

namespace Mesh.Client.Telemetry;

/// <summary>
/// Counts the messages of one direction of a gRPC stream from its length-prefixed framing (a 1-byte compressed flag,
/// a 4-byte big-endian length, then that many bytes), fed the body bytes in order in any chunking, and the body bytes
/// seen. A message counts when its first byte (the flag) is seen, as Envoy's grpc_stats FrameInspector counts it, so a
/// frame cut off at the end of the stream still counts. A flag byte other than 0 or 1 is not gRPC framing: counting
/// stops there, as Envoy's inspector stops on a decoding error; the bytes are still counted.
/// </summary>
internal struct GrpcFrameCounter
{
    private const int PrefixLength = 5;

    // Bytes of the current frame's prefix seen (0 = expecting a flag byte), the length read so far, and the payload
    // bytes still to skip once the prefix is complete.
    private int _prefixSeen;
    private uint _length;
    private long _payloadLeft;
    private bool _invalid;

    /// <summary>Gets the messages whose first byte has been seen.</summary>
    public long Messages { get; private set; }

    /// <summary>Gets the body bytes seen.</summary>
    public long Bytes { get; private set; }

    public void Observe(ReadOnlySequence<byte> data)
    {
        foreach (var segment in data)
        {
            Observe(segment.Span);
        }
    }

    public void Observe(ReadOnlySpan<byte> data)
    {
        Bytes += data.Length;
        while (!data.IsEmpty && !_invalid)
        {
            if (_payloadLeft > 0)
            {
                var skip = (int)Math.Min(_payloadLeft, data.Length);
                _payloadLeft -= skip;
                data = data[skip..];
                continue;
            }

            if (_prefixSeen == 0)
            {
                if (data[0] > 1)
                {
                    _invalid = true;
                    return;
                }

                Messages++;
                _length = 0;
            }
            else
            {
                _length = (_length << 8) | data[0];
            }

            data = data[1..];
            if (++_prefixSeen == PrefixLength)
            {
                // A zero-length message ends with its prefix; the next byte is the next message's flag.
                _prefixSeen = 0;
                _payloadLeft = _length;
            }
        }
    }
}
