using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using k8s;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Tests.Support;
using Mesh.KubernetesFake;
using Mesh.Xds.Istio.Auth.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>
/// The CA authenticating a CSR by a projected ServiceAccount token: the real CA gRPC API on the secure port, the real
/// KubernetesClient through a kubeconfig, and the fake API server's TokenReview over HTTPS.
/// </summary>
public sealed class TokenReviewAuthenticationTests : IAsyncLifetime
{
    private const string AB = "spiffe://cluster.local/ns/a/sa/b";

    private FakeKubernetesApiServer _api = null!;

    public async Task InitializeAsync() => _api = await FakeKubernetesApiServer.StartAsync();

    public async Task DisposeAsync() => await _api.DisposeAsync();

    [Fact]
    public async Task CreateCertificate_ProjectedTokenForAB_CertifiesExactlyNsASaB()
    {
        await using var cp = await StartAsync();
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"], "b-7d9f");
        var reviewsBefore = TokenReviews();
        var watch = Stopwatch.StartNew();

        var (chain, leaf) = await cp.IssueAsync(token);

        Console.WriteLine($"CSR with a projected token for a/b → {string.Join(", ", CertificateAuthority.UriSans(leaf))} in {watch.ElapsedMilliseconds} ms (one TokenReview)");
        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
        Assert.Equal(reviewsBefore + 1, TokenReviews());
        CertificateServiceTests.AssertChainsTo(leaf, chain[^1], []);

        // The certificate it bought authenticates the renewal: no token needed then.
        var (_, renewed) = await cp.IssueAsync(clientCertificate: leaf);
        Assert.Equal([AB], CertificateAuthority.UriSans(renewed));

        // Each CSR is one review (nothing cached): 20 in a row, timed.
        var times = new List<double>();
        for (var i = 0; i < 20; i++)
        {
            watch.Restart();
            var (_, again) = await cp.IssueAsync(token);
            times.Add(watch.Elapsed.TotalMilliseconds);
            Assert.Equal([AB], CertificateAuthority.UriSans(again));
        }

        times.Sort();
        Assert.Equal(reviewsBefore + 21, TokenReviews());
        Console.WriteLine($"20 CSRs with a projected token (one TokenReview each): p50 {times[10]:0.0} ms, max {times[^1]:0.0} ms");
    }

    [Fact]
    public async Task CreateCertificate_TokenForAnotherAudience_NoCertificate()
    {
        await using var cp = await StartAsync();
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["https://kubernetes.default.svc.cluster.local"], "b-7d9f");

        var ex = await RefusedAsync(cp, token);

        Console.WriteLine($"CSR with a token for another audience → {ex.StatusCode}: {ex.Status.Detail}");
        Assert.Contains("kubernetes service account token: the Kubernetes TokenReview reports an error", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("is invalid for the target audiences [\"istio-ca\"]", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_TokenAudiences_AreSentAndChecked()
    {
        var recorder = new ReviewAdapter();
        await using var cp = await StartAsync(["--ControlPlane:Kubernetes:TokenAudiences=mesh-ca,istio-ca"], recorder);
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);

        var (_, leaf) = await cp.IssueAsync(token);

        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
        var review = Assert.Single(recorder.Requests);
        Assert.Equal("authentication.k8s.io/v1", (string?)review["apiVersion"]);
        Assert.Equal("TokenReview", (string?)review["kind"]);
        Assert.Equal(token, (string?)review["spec"]!["token"]);
        Assert.Equal(["mesh-ca", "istio-ca"], review["spec"]!["audiences"]!.AsArray().Select(a => (string?)a));
    }

    [Fact]
    public async Task CreateCertificate_UnknownOrRevokedToken_Unauthenticated()
    {
        await using var cp = await StartAsync();
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"], "b-7d9f");
        _ = await cp.IssueAsync(token);
        Assert.True(_api.RemoveServiceAccountToken(token)); // its pod deleted: the API server no longer honours it

        var revoked = await RefusedAsync(cp, token);
        var unknown = await RefusedAsync(cp, ProjectedToken("a", "b"));

        Assert.Contains("the Kubernetes TokenReview reports an error", revoked.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("the Kubernetes TokenReview reports an error", unknown.Status.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(500, "the API server answered 500")]
    [InlineData(503, "the API server answered 503")]
    public async Task CreateCertificate_TokenReviewFails_UnauthenticatedAndLogged(int status, string expected)
    {
        var logs = new LogSink();
        await using var cp = await StartAsync(services: s => s.AddSingleton<ILoggerProvider>(logs));
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
        _api.FailTokenReviews(status);

        var ex = await RefusedAsync(cp, token);

        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(logs.Lines, l => l.Contains("refused: kubernetes service account token: the Kubernetes TokenReview failed", StringComparison.Ordinal) && l.Contains(expected, StringComparison.Ordinal));
        Assert.DoesNotContain(logs.Lines, l => l.Contains(token, StringComparison.Ordinal) || l.Contains(token.Split('.')[2], StringComparison.Ordinal));

        _api.FailTokenReviews(null);
        var (_, leaf) = await cp.IssueAsync(token);
        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
    }

    [Fact]
    public async Task CreateCertificate_ApiServerDown_UnauthenticatedThenRecovers()
    {
        await using var cp = await StartAsync();
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
        await _api.GoDownAsync();

        var ex = await RefusedAsync(cp, token);

        Console.WriteLine($"CSR while the API server is down → {ex.StatusCode}: {ex.Status.Detail}");
        Assert.Contains("the Kubernetes API server is unreachable for TokenReview", ex.Status.Detail, StringComparison.Ordinal);
        await _api.ComeBackAsync();
        var (_, leaf) = await cp.IssueAsync(token);
        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
    }

    [Fact]
    public async Task CreateCertificate_TokenReviewHangs_RefusedAtTheTimeout()
    {
        var adapter = new ReviewAdapter();
        await using var cp = await StartAsync(["--ControlPlane:Kubernetes:TokenReviewTimeout=00:00:00.500"], adapter);
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
        adapter.Hang.Add(token);
        var watch = Stopwatch.StartNew();

        var ex = await RefusedAsync(cp, token);

        Assert.Contains("got no answer within 0.5 s (ControlPlane:Kubernetes:TokenReviewTimeout)", ex.Status.Detail, StringComparison.Ordinal);
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(400), TimeSpan.FromSeconds(20));
    }

    /// <summary>
    /// Bearer tokens that cannot be a projected token for our audience: each refused by the CA itself, naming why, and
    /// never relayed to the API server (a flood of them must not become a flood of TokenReviews).
    /// </summary>
    public static TheoryData<string, string> UnreviewableTokens() => new()
    {
        { "opaque-token-0123456789", "the bearer token is not a JWT" },
        { "a.b.c.d", "the bearer token is not a JWT" },
        { "eyJhbGciOiJSUzI1NiJ9.!!!.c2ln", "payload is not base64url-encoded JSON" },
        { Jwt(new() { ["sub"] = "system:serviceaccount:a:b" }), "the bearer token has no audience (aud)" },
        { Jwt(new() { ["aud"] = "https://kubernetes.default.svc.cluster.local", ["sub"] = "system:serviceaccount:a:b" }), "the bearer token is for audience 'https://kubernetes.default.svc.cluster.local', not one of ControlPlane:Kubernetes:TokenAudiences (istio-ca)" },
        { Jwt(new() { ["aud"] = new[] { "istio-ca" }, ["exp"] = DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeSeconds() }), "the bearer token expired at " },
    };

    [Theory]
    [MemberData(nameof(UnreviewableTokens))]
    public async Task CreateCertificate_TokenThatCannotBeAProjectedTokenForUs_RefusedWithoutAReview(string token, string expected)
    {
        await using var cp = await StartAsync();
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]); // were it reviewed, the API server would vouch for it

        var ex = await RefusedAsync(cp, token);

        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("no TokenReview was asked for it", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, TokenReviews());
    }

    [Fact]
    public async Task CreateCertificate_MoreCsrsThanReviewsInFlight_TheRestRefusedAtOnce_NeverRelayed()
    {
        var adapter = new ReviewAdapter();
        await using var cp = await StartAsync(["--ControlPlane:Kubernetes:TokenReviewTimeout=00:00:30"], adapter);
        var held = new List<Task<(IReadOnlyList<X509Certificate2> Chain, X509Certificate2 Leaf)>>();
        for (var i = 0; i < TokenReviewAuthenticator.MaxReviewsInFlight; i++)
        {
            var token = ProjectedToken("a", "b");
            _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
            adapter.Held.Add(token);

            // Each from its own address, so no address's share binds (nor the slots kept for addresses with none): the cap does.
            held.Add(cp.IssueAsync(token, from: Peer(i)));
        }

        await Poll.UntilAsync(() => adapter.Requests.Count == TokenReviewAuthenticator.MaxReviewsInFlight, "the first reviews to reach the API server");
        var extra = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(extra, "a", "b", ["istio-ca"]);

        var refused = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(extra, from: Peer(TokenReviewAuthenticator.MaxReviewsInFlight)));

        // UNAVAILABLE, not UNAUTHENTICATED: the token was not judged, and the client backs off or fails over to another replica.
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Equal($"caller could not be authenticated now: kubernetes service account token: {TokenReviewAuthenticator.MaxReviewsInFlight} TokenReviews are already in flight to the Kubernetes API server; retry later", refused.Status.Detail);
        Assert.Equal(TokenReviewAuthenticator.MaxReviewsInFlight, adapter.Requests.Count);

        // The API server answers the held reviews: each is certified, and the slots are free again for the next CSR.
        adapter.ReleaseHeld();
        foreach (var (_, leaf) in await Task.WhenAll(held))
        {
            Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
        }

        var (_, next) = await cp.IssueAsync(extra);
        Assert.Equal([AB], CertificateAuthority.UriSans(next));
    }

    [Fact]
    public async Task CreateCertificate_OneAddressOverItsShare_RefusedWithoutReview_OtherAddressesServed()
    {
        var adapter = new ReviewAdapter();
        var logs = new LogSink();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cp = await StartAsync(
            ["--ControlPlane:Kubernetes:TokenReviewTimeout=00:00:30", "--ControlPlane:Kubernetes:TokenReviewBurstPerAddress=10", "--ControlPlane:Kubernetes:TokenReviewsPerAddressPerSecond=4"],
            adapter,
            s =>
            {
                // The limiter with the host's settings, on its own clock: refill and log intervals move only when the test says.
                s.AddSingleton(sp => new PeerReviewLimiter(clock, sp.GetRequiredService<Mesh.ControlPlane.Configuration.ControlPlaneOptions>()));
                s.AddSingleton<ILoggerProvider>(logs);
            });

        // One address holds its share of reviews in flight (the API server is slow to answer them)...
        var held = new List<Task<(IReadOnlyList<X509Certificate2> Chain, X509Certificate2 Leaf)>>();
        Task<(IReadOnlyList<X509Certificate2> Chain, X509Certificate2 Leaf)> Hold(int peer)
        {
            var token = ProjectedToken("a", "b");
            _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
            adapter.Held.Add(token);
            var issued = cp.IssueAsync(token, from: Peer(peer));
            held.Add(issued);
            return issued;
        }

        for (var i = 0; i < PeerReviewLimiter.MaxInFlightPerPeer; i++)
        {
            _ = Hold(0);
        }

        await Poll.UntilAsync(() => adapter.Requests.Count == PeerReviewLimiter.MaxInFlightPerPeer, "the first address's reviews to reach the API server");

        // ...so its next CSR, on a new connection (another source port, the same address), is refused without a review,
        // and so are the next twenty, logged once.
        var more = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(more, "a", "b", ["istio-ca"]);
        var refused = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(more, from: Peer(0)));
        Console.WriteLine($"5th CSR in flight from 127.0.0.1 → {refused.StatusCode}: {refused.Status.Detail}");
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Equal($"caller could not be authenticated now: kubernetes service account token: {PeerReviewLimiter.MaxInFlightPerPeer} TokenReviews from 127.0.0.1 are already in flight; retry later", refused.Status.Detail);
        for (var i = 0; i < 20; i++)
        {
            await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(more, from: Peer(0)));
        }

        Assert.Equal(PeerReviewLimiter.MaxInFlightPerPeer, adapter.Requests.Count);
        var busy = logs.Lines.Where(l => l.Contains("refused for now", StringComparison.Ordinal)).ToList();
        Assert.Single(busy);
        Assert.EndsWith("4 TokenReviews from 127.0.0.1 are already in flight; retry later", busy[0], StringComparison.Ordinal);

        // A LogInterval later the next refusal is logged, with the count of those that were not.
        clock.Advance(PeerReviewLimiter.LogInterval);
        await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(more, from: Peer(0)));
        busy = [.. logs.Lines.Where(l => l.Contains("refused for now", StringComparison.Ordinal))];
        Console.WriteLine($"{busy.Count} log lines for 22 refusals: {busy[^1]}");
        Assert.Equal(2, busy.Count);
        Assert.EndsWith("retry later (20 more refusals of 127.0.0.1 since its last line)", busy[1], StringComparison.Ordinal);

        // Two more addresses at their share: 12 reviews in flight. A fourth address's first review takes one of the last
        // slots, kept for addresses with none in flight; its second may not, and a fifth address still gets one.
        for (var i = 0; i < PeerReviewLimiter.MaxInFlightPerPeer; i++)
        {
            _ = Hold(1);
            _ = Hold(2);
        }

        await Poll.UntilAsync(() => adapter.Requests.Count == 3 * PeerReviewLimiter.MaxInFlightPerPeer, "12 reviews at the API server");
        _ = Hold(3);
        await Poll.UntilAsync(() => adapter.Requests.Count == 3 * PeerReviewLimiter.MaxInFlightPerPeer + 1, "13 reviews at the API server");
        var second = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(second, "a", "b", ["istio-ca"]);
        var kept = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(second, from: Peer(3)));
        Console.WriteLine($"2nd review of 127.0.0.4 with 13 in flight → {kept.StatusCode}: {kept.Status.Detail}");
        Assert.Equal(StatusCode.Unavailable, kept.StatusCode);
        Assert.Equal("caller could not be authenticated now: kubernetes service account token: 12 TokenReviews are in flight to the Kubernetes API server and 127.0.0.4 has one of them; the last 4 are kept for addresses with none; retry later", kept.Status.Detail);
        Assert.Equal(13, adapter.Requests.Count);

        var other = ProjectedToken("c", "d");
        _api.AddServiceAccountToken(other, "c", "d", ["istio-ca"]);
        var (_, otherLeaf) = await cp.IssueAsync(other, from: Peer(4));
        Assert.Equal(["spiffe://cluster.local/ns/c/sa/d"], CertificateAuthority.UriSans(otherLeaf));

        adapter.ReleaseHeld();
        foreach (var (_, leaf) in await Task.WhenAll(held))
        {
            Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
        }

        // Back to back from one address, the clock standing still: exactly the configured burst (10) is reviewed, then one
        // more per refill period (a quarter second at 4 a second); a refused CSR costs no review.
        var reviewsBefore = TokenReviews();
        var accepted = 0;
        RpcException? rateRefused = null;
        while (rateRefused is null && accepted <= 10)
        {
            try
            {
                _ = await cp.IssueAsync(other, from: Peer(5));
                accepted++;
            }
            catch (RpcException ex)
            {
                rateRefused = ex;
            }
        }

        Console.WriteLine($"back to back from 127.0.0.6: {accepted} certified, then {rateRefused?.StatusCode}: {rateRefused?.Status.Detail}");
        Assert.Equal(10, accepted);
        Assert.Equal("caller could not be authenticated now: kubernetes service account token: 127.0.0.6 asked for more than 10 TokenReviews at once or 4 a second (ControlPlane:Kubernetes:TokenReviewBurstPerAddress, TokenReviewsPerAddressPerSecond); retry later", rateRefused!.Status.Detail);
        Assert.Equal(reviewsBefore + accepted, TokenReviews());

        clock.Advance(TimeSpan.FromSeconds(1.0 / 4));
        _ = await cp.IssueAsync(other, from: Peer(5));
        await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(other, from: Peer(5)));
        Assert.Equal(reviewsBefore + accepted + 1, TokenReviews());

        // Each refusal counted by the bound that made it, for an alert that does not depend on the log's sampling.
        PrometheusText? scrape = null;
        await Poll.UntilAsync(async () => (scrape = await PrometheusText.ScrapeAsync(cp.Admin)).Count("mesh_ca_tokenreview_refusals", ("reason", ReviewRefusal.AddressRate)) == 2, "two address_rate refusals in the scrape");
        Assert.Equal(22, scrape!.Count("mesh_ca_tokenreview_refusals", ("reason", ReviewRefusal.AddressInFlight)));
        Assert.Equal(1, scrape.Count("mesh_ca_tokenreview_refusals", ("reason", ReviewRefusal.ReservedSlots)));
        Assert.Equal(0, scrape.Count("mesh_ca_tokenreview_refusals", ("reason", ReviewRefusal.InFlight)));
        Assert.Equal("counter", scrape.TypeOf("mesh_ca_tokenreview_refusals"));
    }

    [Fact]
    public async Task CreateCertificate_ReviewsThatTimedOut_GiveTheirSlotsBack()
    {
        var adapter = new ReviewAdapter();
        await using var cp = await StartAsync(["--ControlPlane:Kubernetes:TokenReviewTimeout=00:00:00.500"], adapter);
        var hanging = new List<Task<RpcException>>();
        for (var i = 0; i < TokenReviewAuthenticator.MaxReviewsInFlight; i++)
        {
            var token = ProjectedToken("a", "b");
            _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
            adapter.Hang.Add(token);
            hanging.Add(RefusedAsync(cp, token, from: Peer(i)));
        }

        foreach (var ex in await Task.WhenAll(hanging))
        {
            Assert.Contains("got no answer within 0.5 s", ex.Status.Detail, StringComparison.Ordinal);
        }

        var next = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(next, "a", "b", ["istio-ca"]);
        var (_, leaf) = await cp.IssueAsync(next);
        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
    }

    private static readonly DateTimeOffset ShapeNow = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);

    /// <summary>What a projected token may look like and must still be reviewed (null), and where the local check draws its lines.</summary>
    public static TheoryData<string, string?> Shapes() => new()
    {
        { Jwt(new() { ["aud"] = "istio-ca", ["exp"] = ShapeNow.AddHours(1).ToUnixTimeSeconds() }), null },
        { Jwt(new() { ["aud"] = new[] { "https://kubernetes.default.svc", "istio-ca" } }), null },
        { Jwt(new() { ["aud"] = new[] { "istio-ca" }, ["exp"] = ShapeNow.AddSeconds(-59).ToUnixTimeSeconds() }), null },
        { Jwt(new() { ["aud"] = new[] { "istio-ca" }, ["exp"] = ShapeNow.AddSeconds(-61).ToUnixTimeSeconds() }), "the bearer token expired at 2026-12-04 11:58:59Z" },
        { Jwt(new() { ["aud"] = new[] { "istio-ca" }, ["exp"] = long.MaxValue }), null },
        { Jwt(new() { ["aud"] = new[] { "istio-ca" }, ["exp"] = long.MinValue }), "the bearer token expired at 0001-01-01 00:00:00Z" },
        { Jwt(new() { ["aud"] = new[] { "a", "b", "c", "d", "e" } }), "the bearer token is for audience 'a', 'b', 'c' and 2 more, not one of ControlPlane:Kubernetes:TokenAudiences (istio-ca)" },
        { Jwt(new() { ["aud"] = 42 }), "the bearer token has no audience (aud)" },
        { "e30.W10.c2ln", "the bearer token's payload is not a JSON object" },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CheckShape_AcceptsWhatAProjectedTokenMayBe_RefusesTheRestNamingWhy(string token, string? expected)
    {
        var refusal = TokenReviewAuthenticator.CheckShape(token, ["istio-ca"], ShapeNow);

        if (expected is null)
        {
            Assert.Null(refusal);
        }
        else
        {
            Assert.NotNull(refusal);
            Assert.StartsWith(expected, refusal, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// Answers a real API server can give that the fake's reviewer does not make (another authenticator in the chain: an
    /// OIDC user, a token-webhook answer): the fake's response is rewritten on the wire before the client reads it.
    /// </summary>
    public static TheoryData<string, string> ForeignAnswers() => new()
    {
        { "user:oidc:alice", "the token belongs to 'oidc:alice', not to a service account" },
        { "user:system:serviceaccount:a:b:extra", "not to a service account (system:serviceaccount:<namespace>:<name>)" },
        { "user:system:serviceaccount:A:b", "is not a DNS-label namespace and name" },
        { "user:system:serviceaccount:a", "not to a service account" },
        { "groups:system:authenticated", "is not in group system:serviceaccounts" },
        { "audiences:", "the TokenReview returned no audiences" },
        { "audiences:https://kubernetes.default.svc.cluster.local", "returned audience 'https://kubernetes.default.svc.cluster.local', which is not one of ControlPlane:Kubernetes:TokenAudiences (istio-ca)" },
        { "authenticated:false", "did not authenticate the token" },
    };

    [Theory]
    [MemberData(nameof(ForeignAnswers))]
    public async Task CreateCertificate_ReviewNotOfAServiceAccountForOurAudience_NoCertificate(string rewrite, string expected)
    {
        var adapter = new ReviewAdapter();
        await using var cp = await StartAsync(adapter: adapter);
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
        adapter.Rewrites[token] = rewrite;

        var ex = await RefusedAsync(cp, token);

        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_CsrAsksForAnotherIdentity_CertificateSaysTheTokensServiceAccount()
    {
        await using var cp = await StartAsync();
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = SecureHost.Csr(key, "CN=spiffe://cluster.local/ns/kube-system/sa/admin", request =>
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri("spiffe://cluster.local/ns/kube-system/sa/admin"));
            san.AddUri(new Uri("spiffe://cluster.local/ns/a/sa/other"));
            san.AddDnsName("admin.kube-system.svc");
            request.CertificateExtensions.Add(san.Build());
        });

        var response = await cp.CaClient().CreateCertificateAsync(new IstioCertificateRequest { Csr = csr }, SecureHost.Bearer(token));

        using var leaf = X509Certificate2.CreateFromPem(response.CertChain[0]);
        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
        Assert.Empty(leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single().EnumerateDnsNames());
        Assert.Equal(string.Empty, leaf.Subject);
    }

    [Fact]
    public async Task CreateCertificate_ReservedIdentityByToken_Refused()
    {
        await using var cp = await StartAsync();
        var token = ProjectedToken("mesh-system", "mesh-control-plane");
        _api.AddServiceAccountToken(token, "mesh-system", "mesh-control-plane", ["istio-ca"]);

        var ex = await RefusedAsync(cp, token);

        Assert.Contains("spiffe://cluster.local/ns/mesh-system/sa/mesh-control-plane is a reserved identity", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BootstrapToken_WithKubernetesOn_StillWorksAndIsNeverSentToTheApiServer()
    {
        var recorder = new ReviewAdapter();
        await using var cp = await StartAsync(adapter: recorder);
        var bootstrap = cp.Token("a", "b");

        var (_, leaf) = await cp.IssueAsync(bootstrap);
        // Spent: the second use is refused by the bootstrap rules, and still not handed to TokenReview.
        var spent = await RefusedAsync(cp, bootstrap);

        Assert.Equal([AB], CertificateAuthority.UriSans(leaf));
        Assert.Contains("bearer token: bearer token", spent.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("was already used", spent.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(recorder.Requests);
        Assert.Equal(0, TokenReviews());
    }

    [Fact]
    public async Task ServiceAccountTokenClaimingOurIssuer_NotPassedAsEither()
    {
        var recorder = new ReviewAdapter();
        await using var cp = await StartAsync(adapter: recorder);

        // A token that says iss=mesh-control-plane but is not signed by our key: even one the API server would honour
        // (registered as a real ServiceAccount token) is judged as a bootstrap token only, and fails that.
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var forged = SecureHost.Jws(new Dictionary<string, object> { ["alg"] = "ES256", ["typ"] = "JWT" }, SecureHost.Claims("a", "b"), otherKey);
        _api.AddServiceAccountToken(forged, "a", "b", ["istio-ca"]);

        var ex = await RefusedAsync(cp, forged);

        Assert.Contains("bearer token: bearer token signature does not verify", ex.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("kubernetes service account token", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(recorder.Requests);
    }

    [Fact]
    public async Task BootstrapTokenReissuedUnderAnotherIssuer_NotAcceptedAsBootstrap()
    {
        var recorder = new ReviewAdapter();
        await using var cp = await StartAsync(adapter: recorder);

        // Our own key, our claims, but iss rewritten: it is not a bootstrap token; as a service account token it is for
        // the bootstrap audience, not ours, so it is refused without a TokenReview.
        var claims = SecureHost.Claims("a", "b", iss: "https://kubernetes.default.svc.cluster.local");
        var token = SecureHost.Jws(new Dictionary<string, object> { ["alg"] = "ES256", ["typ"] = "JWT" }, claims, cp.TokenSigningKey());

        var ex = await RefusedAsync(cp, token);

        Assert.Contains("kubernetes service account token: the bearer token is for audience 'mesh-ca', not one of ControlPlane:Kubernetes:TokenAudiences (istio-ca)", ex.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("bearer token:", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(recorder.Requests);
    }

    [Fact]
    public async Task KubernetesOff_ServiceAccountTokenRefusedByBootstrapRules_NoReview()
    {
        await using var cp = await SecureHost.StartAsync();
        var token = ProjectedToken("a", "b");
        _api.AddServiceAccountToken(token, "a", "b", ["istio-ca"]);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(token));

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains("bearer token: bearer token alg 'RS256' is not accepted", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, TokenReviews());
    }

    [Fact]
    public async Task MalformedAuthorization_RefusedOnce_NoReview()
    {
        await using var cp = await StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key) }, new Metadata { { "authorization", "Basic YTpi" } }).ResponseAsync);

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Equal("caller is not authenticated: bearer token: authorization metadata must be 'Bearer <token>'", ex.Status.Detail);
        Assert.Equal(0, TokenReviews());
    }

    private int TokenReviews() => _api.Requests.Count(r => r.Resource == "tokenreviews");

    private Task<SecureHost> StartAsync(string[]? args = null, ReviewAdapter? adapter = null, Action<IServiceCollection>? services = null) =>
        SecureHost.StartAsync(
            null,
            [
                "--ControlPlane:Kubernetes:Enabled=true",
                $"--ControlPlane:Kubernetes:Kubeconfig={_api.KubeconfigPath}",
                .. args ?? [],
            ],
            false,
            s =>
            {
                if (adapter is not null)
                {
                    // The same kubeconfig and wire, with the adapter in the client's handler chain.
                    s.AddSingleton<IKubernetes>(_ => new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(_api.KubeconfigPath), adapter));
                }

                services?.Invoke(s);
            });

    /// <summary>The loopback address of the <paramref name="index"/>th peer: 127.0.0.1, 127.0.0.2, …</summary>
    private static IPAddress Peer(int index) => new([127, 0, 0, (byte)(1 + index)]);

    private static async Task<RpcException> RefusedAsync(SecureHost cp, string token, IPAddress? from = null)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(token, from: from));
        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.StartsWith("caller is not authenticated: ", ex.Status.Detail, StringComparison.Ordinal);
        return ex;
    }

    private static string Jwt(Dictionary<string, object> payload) =>
        Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object> { ["alg"] = "RS256" })) + "."
        + Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(payload)) + ".c2lnbmF0dXJlLW5vdC1jaGVja2VkLWhlcmU"; // fixed: theory cases keep their IDs

    /// <summary>A token shaped like a projected one (RS256 JWS from the cluster's issuer); only the fake API server can vouch for it.</summary>
    private static string ProjectedToken(string ns, string sa)
    {
        var now = DateTimeOffset.UtcNow;
        var header = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object> { ["alg"] = "RS256", ["kid"] = "k8s-1" });
        var payload = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["iss"] = "https://kubernetes.default.svc.cluster.local",
            ["aud"] = new[] { "istio-ca" },
            ["sub"] = $"system:serviceaccount:{ns}:{sa}",
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = now.AddHours(12).ToUnixTimeSeconds(),
        });
        return Base64Url.EncodeToString(header) + "." + Base64Url.EncodeToString(payload) + "." + Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(256));
    }

    /// <summary>
    /// In the KubernetesClient's handler chain: records TokenReview requests, holds back the answer for tokens in
    /// <see cref="Hang"/> until the call is cancelled, and rewrites the fake's real answer for tokens in <see cref="Rewrites"/>.
    /// </summary>
    private sealed class ReviewAdapter : DelegatingHandler
    {
        public ConcurrentQueue<JsonObject> Requests { get; } = new();

        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ConcurrentBag<string> Hang { get; } = [];

        /// <summary>Tokens whose review waits at the API server until <see cref="ReleaseHeld"/>.</summary>
        public ConcurrentBag<string> Held { get; } = [];

        public void ReleaseHeld() => _release.TrySetResult();

        public ConcurrentDictionary<string, string> Rewrites { get; } = new();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.RequestUri?.AbsolutePath != "/apis/authentication.k8s.io/v1/tokenreviews" || request.Content is null)
            {
                return await base.SendAsync(request, cancellationToken);
            }

            var body = await request.Content.ReadAsStringAsync(cancellationToken);
            var review = (JsonObject)JsonNode.Parse(body)!;
            Requests.Enqueue(review);
            var token = (string?)review["spec"]?["token"] ?? string.Empty;
            var contentType = request.Content.Headers.ContentType;
            request.Content = new StringContent(body, Encoding.UTF8);
            request.Content.Headers.ContentType = contentType;
            if (Hang.Contains(token))
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }

            if (Held.Contains(token))
            {
                await _release.Task.WaitAsync(cancellationToken);
            }

            var response = await base.SendAsync(request, cancellationToken);
            if (!Rewrites.TryGetValue(token, out var rewrite))
            {
                return response;
            }

            var answer = (JsonObject)JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken))!;
            var status = answer["status"]!.AsObject();
            var (field, value) = (rewrite[..rewrite.IndexOf(':', StringComparison.Ordinal)], rewrite[(rewrite.IndexOf(':', StringComparison.Ordinal) + 1)..]);
            switch (field)
            {
                case "user":
                    status["user"]!["username"] = value;
                    break;
                case "groups":
                    status["user"]!["groups"] = new JsonArray(value);
                    break;
                case "audiences":
                    status["audiences"] = value.Length == 0 ? new JsonArray() : new JsonArray(value);
                    break;
                case "authenticated":
                    status["authenticated"] = bool.Parse(value);
                    break;
                default:
                    throw new ArgumentException($"unknown rewrite {rewrite}");
            }

            response.Content = new StringContent(answer.ToJsonString(), Encoding.UTF8, "application/json");
            return response;
        }
    }
}
