using System.Diagnostics;
using System.Net;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// HTTPLocalRateLimitPolicy on real processes: a control plane, a limited workload (Mesh.Samples.Orders, PERMISSIVE so
/// unmeshed callers reach it too), and callers with real SVIDs over real mTLS. Counts are measured and printed. Buckets
/// refill once a second, so every upper bound allows for the fills a burst may straddle (measured, not guessed).
/// </summary>
public sealed class LocalRateLimitTests(ITestOutputHelper output)
{
    private const string Service = "limited";

    [Fact]
    public async Task HttpLocalRateLimitPolicy_RealMtlsCallers_PerIdentityOverrideTotalLiveChangeAndBadConfig()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var scratch = Directory.CreateTempSubdirectory("mesh-it-ratelimit-").FullName;
        var configFile = Path.Combine(mesh.ConfigDirectory, "limited.yaml");
        try
        {
            await File.WriteAllTextAsync(configFile, Yaml(total: 1000, identity: 4, overrideB: 8));
            var server = await mesh.StartWorkloadAsync("Mesh.Samples.Orders", Service, $"{Service}-1");
            await mesh.WaitReadyAsync(server);

            using var callerA = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "caller-a", Path.Combine(scratch, "a")));
            using var callerB = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "caller-b", Path.Combine(scratch, "b")));
            using var plain1 = CreatePlainClient();
            using var plain2 = CreatePlainClient();
            var https = Https(server, "/_stats");
            var http = Http(server, "/_stats");

            // The policy reaches the server over xDS: its responses start carrying X-RateLimit-Limit.
            await Eventually.ReturnsAsync(async () => (await SendAsync(callerB, https)).Limit, limit => limit == "8", "caller-b's override (8 rps) to apply", TimeSpan.FromSeconds(60));
            await RefillAsync();

            // 1. Each identity on its own bucket, the override honoured, unmeshed callers sharing one key.
            var clock = Stopwatch.StartNew();
            var phase = await Task.WhenAll(
                BurstAsync(callerA, https, 12),
                BurstAsync(callerB, https, 12),
                BurstAsync(plain1, http, 6),
                BurstAsync(plain2, http, 6));
            var fills = Fills(clock.Elapsed);
            var (a, b, unmeshed) = (phase[0], phase[1], Merge(phase[2], phase[3]));
            Print("identity 4 rps", "caller-a", a, fills);
            Print("override 8 rps", "caller-b", b, fills);
            Print("identity 4 rps (shared)", "two plaintext clients", unmeshed, fills);
            AssertWithin(a.Allowed, 4, 4 * fills, "caller-a (identity 4 rps)");
            AssertWithin(b.Allowed, 8, 8 * fills, "caller-b (override 8 rps)");
            AssertWithin(unmeshed.Allowed, 4, 4 * fills, "plaintext callers (one shared 4 rps key)");
            Assert.True(a.Refused > 0 && b.Refused > 0 && unmeshed.Refused > 0, "every caller must have met its limit");
            Assert.All(a.RefusedStatuses.Concat(b.RefusedStatuses).Concat(unmeshed.RefusedStatuses), s => Assert.Equal(429, s));

            // 2. Attacker's path: caller-a claims caller-b's identity in every header a proxy might trust. It is still
            // counted on its own bucket (X-RateLimit-Limit 4, caller-b's is 8).
            var spoofed = await BurstAsync(callerA, https, 6, request =>
            {
                request.Headers.Add("x-forwarded-client-cert", $"By={SpiffeId("limited")};URI={SpiffeId("caller-b")}");
                request.Headers.Add("x-spiffe-id", SpiffeId("caller-b"));
            });
            Print("identity 4 rps", "caller-a spoofing caller-b in XFCC", spoofed, 0);
            Assert.All(spoofed.Limits, l => Assert.Equal("4", l));

            // 3. A live change: caller-b's override drops to 5 and a total of 6 now caps everyone together (the per-caller
            // limits 4 + 5 + 4 would allow 13). X-RateLimit-Limit names the tightest bucket: caller-b's own, 8 before, 5 after.
            await File.WriteAllTextAsync(configFile, Yaml(total: 6, identity: 4, overrideB: 5));
            await Eventually.ReturnsAsync(async () => (await SendAsync(callerB, https)).Limit, limit => limit == "5", "the new limits to apply", TimeSpan.FromSeconds(60));
            await RefillAsync();
            clock.Restart();
            phase = await Task.WhenAll(BurstAsync(callerA, https, 10), BurstAsync(callerB, https, 10), BurstAsync(plain1, http, 10));
            fills = Fills(clock.Elapsed);
            var together = Merge(phase);
            Print("total 6 rps", "caller-a + caller-b + plaintext", together, fills);
            AssertWithin(together.Allowed, 6, 6 * fills, "all callers together (total 6 rps)");

            // 4. A bad edit (identity above total) is refused by the control plane: the last good limits keep serving.
            await File.WriteAllTextAsync(configFile, Yaml(total: 6, identity: 10, overrideB: 5));
            await Eventually.HoldsAsync(async () => await ConfigErrorsContainAsync(mesh, "spec.identity.requestsPerSecond: 10 must not exceed spec.total.requestsPerSecond (6)"), "the control plane to reject the bad edit");
            await RefillAsync();
            clock.Restart();
            var afterBad = await BurstAsync(callerA, https, 10);
            fills = Fills(clock.Elapsed);
            Print("last good: identity 4 rps", "caller-a after the bad edit", afterBad, fills);
            AssertWithin(afterBad.Allowed, 4, 4 * fills, "caller-a under the last good config");
            Assert.All(afterBad.Limits, l => Assert.Equal("4", l));
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>Fill boundaries a burst of <paramref name="elapsed"/> may have crossed, plus the full bucket it started with.</summary>
    private static int Fills(TimeSpan elapsed) => (int)Math.Floor(elapsed.TotalSeconds) + 2;

    private static void AssertWithin(int allowed, int atLeast, int atMost, string who) =>
        Assert.True(allowed >= atLeast && allowed <= atMost, $"{who}: {allowed} allowed, expected {atLeast}..{atMost}");

    private static void Print(string limit, string who, Burst burst, int fills) =>
        Console.WriteLine($"[local-ratelimit] {limit,-26} {who,-36} sent {burst.Allowed + burst.Refused,3}: allowed {burst.Allowed,3}, refused {burst.Refused,3}{(fills > 0 ? $" (bound allows {fills - 1} refill(s) during the burst)" : string.Empty)}");

    /// <summary>Buckets refill with time (1 s fill interval): waiting one interval is the rate itself, not synchronization.</summary>
    private static Task RefillAsync() => Task.Delay(TimeSpan.FromSeconds(1.2));

    private static async Task<bool> ConfigErrorsContainAsync(LocalMesh mesh, string text)
    {
        using var dump = await mesh.ConfigDumpAsync();
        return dump.RootElement.GetProperty("configErrors").EnumerateArray().Any(e => e.GetProperty("message").GetString()!.Contains(text, StringComparison.Ordinal));
    }

    private sealed record Burst(int Allowed, int Refused, List<int> RefusedStatuses, List<string?> Limits);

    private static Burst Merge(params Burst[] bursts) =>
        new(bursts.Sum(b => b.Allowed), bursts.Sum(b => b.Refused), [.. bursts.SelectMany(b => b.RefusedStatuses)], [.. bursts.SelectMany(b => b.Limits)]);

    private static async Task<Burst> BurstAsync(HttpClient client, Uri uri, int count, Action<HttpRequestMessage>? configure = null)
    {
        var results = await Task.WhenAll(Enumerable.Range(0, count).Select(_ => SendAsync(client, uri, configure)));
        var refused = results.Where(r => r.Status != 200).ToList();
        return new Burst(results.Count(r => r.Status == 200), refused.Count, [.. refused.Select(r => r.Status)], [.. results.Select(r => r.Limit)]);
    }

    private static async Task<(int Status, string? Limit)> SendAsync(HttpClient client, Uri uri, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        configure?.Invoke(request);
        using var response = await client.SendAsync(request);
        return ((int)response.StatusCode, response.Headers.TryGetValues("x-ratelimit-limit", out var values) ? values.Single() : null);
    }

    private static string Yaml(int total, int identity, int overrideB) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: {{{Service}}}, namespace: default}
        spec:
          hosts: [{{{Service}}}.default.svc.cluster.local]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          workloadSelector:
            labels: {app: {{{Service}}}}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: {{{Service}}}, namespace: default}
        spec:
          selector: {matchLabels: {app: {{{Service}}}}}
          mtls: {mode: PERMISSIVE}
        ---
        apiVersion: policy.mesh-dotnet.io/v1alpha1
        kind: HTTPLocalRateLimitPolicy
        metadata: {name: {{{Service}}}-limits, namespace: default}
        spec:
          targetRef: {group: networking.istio.io, kind: ServiceEntry, name: {{{Service}}}}
          total: {requestsPerSecond: {{{total}}}}
          identity: {requestsPerSecond: {{{identity}}}}
          overrides:
          - requestsPerSecond: {{{overrideB}}}
            clientRefs: [{kind: ServiceAccount, name: caller-b}]

        """;
}
