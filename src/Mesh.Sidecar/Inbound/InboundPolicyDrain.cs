using System.Collections.Concurrent;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Microsoft.Extensions.Primitives;

namespace Mesh.Sidecar.Inbound;

/// <summary>
/// The inbound streams that outlive the decision made when they began (TCP tunnels, upgraded HTTP requests such as
/// WebSockets), re-decided on every inbound policy change: one the port's new policy refuses, or whose port lost its
/// policy, is aborted after <see cref="MeshInboundConnectionMiddleware.PolicyChangeDrain"/>, as Envoy drains the
/// connections of a filter chain an RBAC change replaced. Without it a DENY or a removed ALLOW stopped new streams only,
/// and an open one kept carrying bytes until its idle timeout, or for ever while busy (review-sidecar #3).
/// </summary>
internal sealed class InboundPolicyDrain : IDisposable
{
    /// <summary>Why a stream whose port has no policy any more is closed.</summary>
    public const string PolicyRemovedReason = "the port's inbound policy was removed";

    private readonly InboundPolicyStore _policies;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<Tracked, byte> _open = new();
    private readonly IDisposable _subscription;

    public InboundPolicyDrain(InboundPolicyStore policies, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(time);
        _policies = policies;
        _time = time;
        _subscription = ChangeToken.OnChange(policies.GetChangeToken, CloseRefused);
    }

    /// <summary>Gets the number of streams tracked (for tests).</summary>
    public int Count => _open.Count;

    /// <summary>
    /// Tracks a stream on <paramref name="port"/> until the returned handle is disposed (when the stream ends).
    /// <paramref name="refusal"/> re-decides it under a policy (null: still allowed, else the reason);
    /// <paramref name="draining"/> is told when its drain begins (to log it), <paramref name="abort"/> ends it at the
    /// drain's end. It is decided once more at once: a change applied between the caller's decision and this call found
    /// nothing to close.
    /// </summary>
    public IDisposable Track(int port, Func<InboundPolicy, string?> refusal, Action<string> draining, Action<string> abort)
    {
        ArgumentNullException.ThrowIfNull(refusal);
        ArgumentNullException.ThrowIfNull(draining);
        ArgumentNullException.ThrowIfNull(abort);
        var stream = new Tracked(this, port, refusal, draining, abort);
        _open[stream] = 0;
        CloseIfRefused(stream);
        return stream;
    }

    public void Dispose() => _subscription.Dispose();

    // Runs on the thread that applied the change (the xDS client), so it never throws.
    private void CloseRefused()
    {
        foreach (var (stream, _) in _open)
        {
            CloseIfRefused(stream);
        }
    }

    private void CloseIfRefused(Tracked stream)
    {
        try
        {
            var reason = _policies.Lookup(stream.Port, out var policy) switch
            {
                InboundPortState.Policy => stream.Refusal(policy!),
                InboundPortState.NotReceived or InboundPortState.Removed => PolicyRemovedReason,
                _ => null,
            };
            if (reason is not null && stream.BeginClose(_time, MeshInboundConnectionMiddleware.PolicyChangeDrain, reason))
            {
                stream.Draining(reason);
            }
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            // The stream ended while it was being decided.
        }
    }

    /// <summary>One tracked stream: how to re-decide it, and the drain timer once a policy change refused it.</summary>
    private sealed class Tracked(InboundPolicyDrain owner, int port, Func<InboundPolicy, string?> refusal, Action<string> draining, Action<string> abort) : IDisposable
    {
        private readonly Lock _gate = new();
        private ITimer? _drain;
        private bool _closing;
        private bool _ended;
        private string _reason = string.Empty;

        public int Port => port;

        public Func<InboundPolicy, string?> Refusal => refusal;

        public Action<string> Draining => draining;

        /// <summary>Arms the abort once; false when it was already armed or the stream has ended (its timer would outlive it).</summary>
        public bool BeginClose(TimeProvider time, TimeSpan drain, string reason)
        {
            lock (_gate)
            {
                if (_closing || _ended)
                {
                    return false;
                }

                _closing = true;
                _reason = reason;
                _drain = time.CreateTimer(static state => ((Tracked)state!).AbortQuietly(), this, drain, Timeout.InfiniteTimeSpan);
                return true;
            }
        }

        public void Dispose()
        {
            owner._open.TryRemove(this, out _);
            lock (_gate)
            {
                _ended = true;
                _drain?.Dispose();
            }
        }

        // On a timer thread: an exception here would end the process, and a stream that is already gone needs nothing.
        // Under the lock Dispose takes, so that the abort never reaches what the stream's owner reused after its end
        // (Kestrel pools HttpContexts).
        private void AbortQuietly()
        {
            lock (_gate)
            {
                if (_ended)
                {
                    return;
                }

                try
                {
                    abort(_reason);
                }
                catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
                {
                }
            }
        }
    }
}
