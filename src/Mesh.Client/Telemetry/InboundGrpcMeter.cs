using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Mesh.Client.Telemetry;

/// <summary>
/// The bodies of a gRPC call Kestrel received, while Istio's metrics are listened to: the request body's pipe reader and
/// the response body's pipe writer (what Grpc.AspNetCore reads and writes) are passed through unchanged, and the bytes
/// and messages they carry are counted. Installed for one request and removed after it (<see cref="Remove"/>).
/// </summary>
/// <remarks>
/// Counted: the request bytes the app consumed from <see cref="HttpRequest.BodyReader"/> and the response bytes it wrote
/// to <see cref="HttpResponse.BodyWriter"/>, i.e. the gRPC bodies (the DATA payloads). Bytes moved through
/// <see cref="HttpRequest.Body"/>/<see cref="HttpResponse.Body"/> streams instead are not seen (Grpc.AspNetCore uses the
/// pipes). Istio counts wire bytes (headers and framing included), which Kestrel does not expose per request.
/// </remarks>
internal sealed class InboundGrpcMeter : IRequestBodyPipeFeature, IHttpResponseBodyFeature
{
    private readonly IRequestBodyPipeFeature _requestFeature;
    private readonly IHttpResponseBodyFeature _responseFeature;
    private CountingReader? _reader;
    private CountingWriter? _writer;
    private GrpcFrameCounter _request;
    private GrpcFrameCounter _response;

    private InboundGrpcMeter(IRequestBodyPipeFeature requestFeature, IHttpResponseBodyFeature responseFeature)
    {
        _requestFeature = requestFeature;
        _responseFeature = responseFeature;
    }

    public long RequestMessages => _request.Messages;

    public long RequestBytes => _request.Bytes;

    public long ResponseMessages => _response.Messages;

    public long ResponseBytes => _response.Bytes;

    // The server's reader follows a later change of Request.Body (EnableBuffering, request decompression): resolved on
    // each access, re-wrapped when it changed. The counts live here, not in the wrapper, so they go on, not restart.
    PipeReader IRequestBodyPipeFeature.Reader
    {
        get
        {
            var inner = _requestFeature.Reader;
            return _reader is { } reader && ReferenceEquals(reader.Inner, inner) ? reader : _reader = new CountingReader(this, inner);
        }
    }

    Stream IHttpResponseBodyFeature.Stream => _responseFeature.Stream;

    PipeWriter IHttpResponseBodyFeature.Writer
    {
        get
        {
            var inner = _responseFeature.Writer;
            return _writer is { } writer && ReferenceEquals(writer.Inner, inner) ? writer : _writer = new CountingWriter(this, inner);
        }
    }

    /// <summary>Installs a meter on the request's body features; null when the server does not offer them.</summary>
    public static InboundGrpcMeter? Install(HttpContext context)
    {
        var features = context.Features;
        if (features.Get<IRequestBodyPipeFeature>() is not { } request || features.Get<IHttpResponseBodyFeature>() is not { } response)
        {
            return null;
        }

        var meter = new InboundGrpcMeter(request, response);
        features.Set<IRequestBodyPipeFeature>(meter);
        features.Set<IHttpResponseBodyFeature>(meter);
        return meter;
    }

    /// <summary>Puts the server's own body features back.</summary>
    public void Remove(HttpContext context)
    {
        var features = context.Features;
        if (ReferenceEquals(features.Get<IRequestBodyPipeFeature>(), this))
        {
            features.Set(_requestFeature);
        }

        if (ReferenceEquals(features.Get<IHttpResponseBodyFeature>(), this))
        {
            features.Set(_responseFeature);
        }
    }

    void IHttpResponseBodyFeature.DisableBuffering() => _responseFeature.DisableBuffering();

    Task IHttpResponseBodyFeature.StartAsync(CancellationToken cancellationToken) => _responseFeature.StartAsync(cancellationToken);

    Task IHttpResponseBodyFeature.SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken) =>
        _responseFeature.SendFileAsync(path, offset, count, cancellationToken);

    Task IHttpResponseBodyFeature.CompleteAsync() => _responseFeature.CompleteAsync();

    private sealed class CountingReader(InboundGrpcMeter owner, PipeReader inner) : PipeReader
    {
        public PipeReader Inner => inner;

        // The buffer of the last read: what AdvanceTo's consumed position points into.
        private ReadOnlySequence<byte> _last;

        // The body bytes consumed through this reader.
        private long _offset;

        public override bool TryRead(out ReadResult result)
        {
            if (inner.TryRead(out result))
            {
                _last = result.Buffer;
                return true;
            }

            return false;
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var pending = inner.ReadAsync(cancellationToken);
            if (pending.IsCompletedSuccessfully)
            {
                // Result consumes a ValueTask backed by a source: hand on the value, never the consumed ValueTask.
                var result = pending.Result;
                _last = result.Buffer;
                return new ValueTask<ReadResult>(result);
            }

            return AwaitReadAsync(pending);
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            if (!_last.IsEmpty)
            {
                // Bytes up to the count so far were counted through an earlier reader (a body buffered and replayed
                // after Request.Body changed): counted once, from where the count stands.
                var data = _last.Slice(_last.Start, consumed);
                var counted = owner._request.Bytes - _offset;
                _offset += data.Length;
                if (counted < data.Length)
                {
                    owner._request.Observe(counted > 0 ? data.Slice(counted) : data);
                }

                _last = default;
            }

            inner.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

        private async ValueTask<ReadResult> AwaitReadAsync(ValueTask<ReadResult> pending)
        {
            var result = await pending.ConfigureAwait(false);
            _last = result.Buffer;
            return result;
        }
    }

    private sealed class CountingWriter(InboundGrpcMeter owner, PipeWriter inner) : PipeWriter
    {
        public PipeWriter Inner => inner;

        // The buffer handed out last: Advance(n) says its first n bytes were written.
        private Memory<byte> _buffer;

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;

        public override Memory<byte> GetMemory(int sizeHint = 0) => _buffer = inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => (_buffer = inner.GetMemory(sizeHint)).Span;

        public override void Advance(int bytes)
        {
            owner._response.Observe(_buffer.Span[..Math.Min(bytes, _buffer.Length)]);
            _buffer = _buffer[Math.Min(bytes, _buffer.Length)..];
            inner.Advance(bytes);
        }

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            owner._response.Observe(source.Span);
            return inner.WriteAsync(source, cancellationToken);
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }
}
