using BenchmarkDotNet.Attributes;
using Mesh.Client.Authorization.RateLimit;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;

namespace Mesh.Benchmarks;

/// <summary>
/// The inbound local rate limit decision on the allowed path, as the control plane configures it (per-identity bucket
/// of a known caller, then the total; an override; a caller without a certificate) plus the X-RateLimit-* header
/// values. Target: 0 bytes allocated per request.
/// </summary>
[MemoryDiagnoser]
public class RateLimitBenchmarks
{
    private const string Alice = "spiffe://cluster.local/ns/default/sa/alice";
    private const string Vip = "spiffe://cluster.local/ns/default/sa/vip";
    private LocalRateLimiter _limiter = null!;

    [GlobalSetup]
    public void Setup()
    {
        var policy = new LocalRateLimitPolicyModel("default", "limits", "orders", uint.MaxValue / 2, uint.MaxValue / 4,
            [new RateLimitOverrideModel(uint.MaxValue / 3, [new ServiceAccountRef("default", "vip")])], "limits.yaml", 1);
        var errors = new List<string>();
        _limiter = LocalRateLimiter.Compile(LocalRateLimitTranslator.Build(policy, "cluster.local"), "filter", errors, TimeProvider.System)
            ?? throw new InvalidOperationException(string.Join("; ", errors));
    }

    [Benchmark(Baseline = true)]
    public int Allow_KnownIdentity() => Decide(Alice);

    [Benchmark]
    public int Allow_Override() => Decide(Vip);

    [Benchmark]
    public int Allow_NoCertificate() => Decide(null);

    private int Decide(string? peer)
    {
        var allowed = _limiter.TryAcquire(peer, out var status, out _);
        return (allowed ? 1 : 0) + LocalRateLimiter.HeaderValue(status.ResetSeconds).Length;
    }
}
