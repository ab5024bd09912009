using Mesh.Xds.Retry;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>
/// The informer's back-off, client-go's Reflector numbers on the mesh's one reconnect rule (<see cref="Backoff.Reconnect"/>):
/// 0.8 s doubling to 30 s, each wait jittered between its base and twice it (at the cap: between 15 and 30 s, so replicas
/// that lost the API server together do not come back in step). It starts again at 0.8 s after a watch that delivered
/// something (<see cref="Reset"/>: a dropped stream of a healthy server is not a failing server) or once no failure came
/// for <see cref="ResetAfter"/> (2 minutes: "~98% traffic reduction" against a flapping API server).
/// </summary>
internal sealed class WatchBackoff(TimeProvider time, Random random)
{
    public static readonly TimeSpan Initial = TimeSpan.FromMilliseconds(800);
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan ResetAfter = TimeSpan.FromMinutes(2);

    private int _failures;
    private long _lastFailure;

    /// <summary>The wait before the next attempt after a failure now.</summary>
    public TimeSpan Next()
    {
        var now = time.GetTimestamp();
        if (_lastFailure != 0 && time.GetElapsedTime(_lastFailure, now) >= ResetAfter)
        {
            _failures = 0;
        }

        _lastFailure = now;
        _failures++;
        return Backoff.Reconnect(Initial * 2, Max, _failures, random.NextDouble(), minShare: 0.5);
    }

    /// <summary>The server answered (a watch delivered an event or a bookmark): the next failure waits the initial delay again.</summary>
    public void Reset() => _failures = 0;
}
