using System.Net;
using k8s;
using Mesh.ControlPlane.Kubernetes;
using Mesh.KubernetesFake;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>One informer against the fake API server through the real client (a handler in front plays a missing CRD).</summary>
public sealed class KubernetesInformerTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RunAsync_CrdNotInstalled_SyncedAsEmpty_ThenPicksTheKindUpOnceServed()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(KubeJson.CustomResource("networking.istio.io/v1", "VirtualService", "shop", "reviews", new System.Text.Json.Nodes.JsonObject { ["hosts"] = new System.Text.Json.Nodes.JsonArray("reviews") }));
        var missing = new NotServed("virtualservices");
        using var client = new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(fake.KubeconfigPath), missing);
        var kind = KubernetesKinds.Istio.Single(k => k.Kind == "VirtualService");
        var changes = 0;
        var informer = new KubernetesInformer<CustomObject>(client, kind, null, TimeSpan.FromMinutes(2), TimeProvider.System, new Random(1), () => Interlocked.Increment(ref changes), NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        var run = informer.RunAsync(stop.Token);

        await fake.WaitUntilAsync(() => informer.HasSynced, Deadline, () => "a kind whose CRD is missing never counted as listed: the control plane would never be ready");
        Assert.Empty(informer.Items);
        Assert.Equal(1, Volatile.Read(ref changes));

        // The CRD is installed: the next list (after back-off) finds the object.
        missing.Served = true;
        await fake.WaitUntilAsync(() => informer.Items.ContainsKey("shop/reviews"), Deadline, () => "the kind was not picked up once served");

        await stop.CancelAsync();
        await run.WaitAsync(Deadline); // never throws out of the loop, ends on cancellation
    }

    [Fact]
    public async Task RunAsync_SecurityKindNotServedAtV1_ReadAtV1beta1_PoliciesNeverSilentlyMissing()
    {
        // Istio before 1.22 serves security.istio.io at v1beta1 only: reading only v1 would drop every AuthorizationPolicy.
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(KubeJson.CustomResource("security.istio.io/v1beta1", "AuthorizationPolicy", "shop", "deny-all", new System.Text.Json.Nodes.JsonObject()));
        using var client = new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(fake.KubeconfigPath), new VersionNotServed("/apis/security.istio.io/v1/"));
        var kind = KubernetesKinds.Istio.Single(k => k.Kind == "AuthorizationPolicy");
        using var changed = new SemaphoreSlim(0);
        var informer = new KubernetesInformer<CustomObject>(client, kind, null, TimeSpan.FromMinutes(2), TimeProvider.System, new Random(1), () => changed.Release(), NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        var run = informer.RunAsync(stop.Token);
        async Task ArrivesAsync(string key)
        {
            while (!informer.Items.ContainsKey(key))
            {
                Assert.True(await changed.WaitAsync(Deadline), $"{key}, served at v1beta1 only, never reached the informer");
            }
        }

        await ArrivesAsync("shop/deny-all");
        Assert.True(informer.HasSynced);
        await fake.WaitForRequestAsync(r => r.Verb == "watch" && r.Path.StartsWith("/apis/security.istio.io/v1beta1/", StringComparison.Ordinal), Deadline);

        // Its changes arrive through the v1beta1 watch.
        fake.Apply(KubeJson.CustomResource("security.istio.io/v1beta1", "AuthorizationPolicy", "shop", "allow-frontend", new System.Text.Json.Nodes.JsonObject()));
        await ArrivesAsync("shop/allow-frontend");

        await stop.CancelAsync();
        await run.WaitAsync(Deadline);
    }

    [Fact]
    public async Task RunAsync_NotFoundAfterSync_KeepsTheAuthorizationPoliciesUntilAListSucceeds()
    {
        // Found in review 2026-12-05: a 404 after the kind had listed (an apiserver restarting, a CRD being replaced) was read
        // as "CRD not installed" and emptied the cache, so every DENY vanished from the next push (fail open).
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(KubeJson.CustomResource("security.istio.io/v1", "AuthorizationPolicy", "shop", "deny-all", new System.Text.Json.Nodes.JsonObject()));
        using var client = new k8s.Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(fake.KubeconfigPath));
        var kind = KubernetesKinds.Istio.Single(k => k.Kind == "AuthorizationPolicy");
        KubernetesInformer<CustomObject>? informer = null;
        var emptied = 0;
        informer = new KubernetesInformer<CustomObject>(client, kind, null, TimeSpan.FromMinutes(2), TimeProvider.System, new Random(1), () =>
        {
            if (informer!.Items.IsEmpty)
            {
                Interlocked.Increment(ref emptied);
            }
        }, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        var run = informer.RunAsync(stop.Token);
        await fake.WaitUntilAsync(() => informer.Items.ContainsKey("shop/deny-all"), Deadline, () => "the policy never listed");
        await fake.WaitForWatchersAsync("authorizationpolicies", 1, Deadline);

        var before = fake.RequestCount;
        int NotFoundLists() => fake.Requests.Skip(before).Count(r => r.Verb == "list" && r.Resource == "authorizationpolicies");
        fake.SetRequestFault(r => r.Resource == "authorizationpolicies" ? new FakeKubernetesStatusException(404, "NotFound", "the server could not find the requested resource") : null);
        fake.CloseWatches();

        // The rewatch and then the relists get 404 (each list after a back-off, at the version that listed: no stepping down).
        await fake.WaitUntilAsync(() => NotFoundLists() >= 3, Deadline, () => $"{NotFoundLists()} lists answered 404; expected the informer to keep listing");
        Assert.True(informer.Items.ContainsKey("shop/deny-all"), "a 404 after the kind had listed emptied its cache: the DENY is gone from the next push");
        Assert.Equal(0, Volatile.Read(ref emptied));
        Assert.True(informer.HasSynced);
        Assert.All(fake.Requests.Skip(before).Where(r => r.Verb == "list"), r => Assert.StartsWith("/apis/security.istio.io/v1/", r.Path, StringComparison.Ordinal));

        // The policy is deleted while the server answers 404; the next successful list takes it out (the deletes the watch missed).
        fake.Delete("security.istio.io/v1", "AuthorizationPolicy", "shop", "deny-all");
        fake.SetRequestFault(null);
        await fake.WaitUntilAsync(() => informer.Items.IsEmpty, Deadline, () => "the successful list after the 404s did not replace the cache");

        await stop.CancelAsync();
        await run.WaitAsync(Deadline);
    }

    /// <summary>Answers 404 for every request under <paramref name="prefix"/> (a group version no CRD serves).</summary>
    private sealed class VersionNotServed(string prefix) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            request.RequestUri!.AbsolutePath.StartsWith(prefix, StringComparison.Ordinal)
                ? Task.FromResult(new HttpResponseMessage(HttpStatusCode.NotFound) { Content = new StringContent("""{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}""") })
                : base.SendAsync(request, cancellationToken);
    }

    /// <summary>Answers 404 (as the API server does for a resource no CRD defines) until <see cref="Served"/>.</summary>
    private sealed class NotServed(string plural) : DelegatingHandler
    {
        public volatile bool Served;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            !Served && request.RequestUri!.AbsolutePath.EndsWith("/" + plural, StringComparison.Ordinal)
                ? Task.FromResult(new HttpResponseMessage(HttpStatusCode.NotFound) { Content = new StringContent("""{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}""") })
                : base.SendAsync(request, cancellationToken);
    }
}
