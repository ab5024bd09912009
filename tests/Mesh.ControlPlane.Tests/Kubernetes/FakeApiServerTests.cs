using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using k8s.Models;
using Mesh.KubernetesFake;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The fake API server checked through the real KubernetesClient (and kubectl): if the fake drifted from the wire protocol,
/// these fail — every other Kubernetes test of the mesh relies on it.
/// </summary>
public sealed class FakeApiServerTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static k8s.Kubernetes Client(FakeKubernetesApiServer fake) =>
        new(KubernetesClientConfiguration.BuildConfigFromConfigFile(fake.KubeconfigPath));

    private static JsonObject Service(string ns, string name, int port = 80) =>
        KubeJson.Service(ns, name, [new ServicePortSpec(port, "http", "http", 8080)], new Dictionary<string, string> { ["app"] = name });

    [Fact]
    public async Task ListThenWatch_FromListResourceVersion_SeesExactlyTheLaterEvents()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        fake.Apply(Service("shop", "b"));
        fake.Apply(Service("other", "elsewhere"));

        var list = await client.CoreV1.ListNamespacedServiceAsync("shop");
        Assert.Equal(["a", "b"], list.Items.Select(s => s.Metadata.Name));
        Assert.Equal(fake.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), list.Metadata.ResourceVersion);

        fake.Apply(Service("shop", "c"));
        fake.Apply(Service("shop", "a", port: 81));
        fake.Delete("v1", "Service", "shop", "b");
        fake.Apply(Service("other", "ignored"));

        using var cts = new CancellationTokenSource(Deadline);
        var seen = new List<(WatchEventType, string, int)>();
        var response = client.CoreV1.WatchListNamespacedServiceAsync("shop", resourceVersion: list.Metadata.ResourceVersion, onError: e => throw e, cancellationToken: cts.Token);
        await foreach (var (type, svc) in response)
        {
            seen.Add((type, svc.Metadata.Name, svc.Spec.Ports[0].Port));
            if (seen.Count == 3)
            {
                // Only now: an event after the replayed ones proves nothing was duplicated or invented in between.
                fake.Apply(Service("shop", "d"));
            }
            if (seen.Count == 4)
            {
                break;
            }
        }

        Assert.Equal(
            [(WatchEventType.Added, "c", 80), (WatchEventType.Modified, "a", 81), (WatchEventType.Deleted, "b", 80), (WatchEventType.Added, "d", 80)],
            seen);
        Assert.All(fake.Requests.Where(r => r.Resource == "services"), r => Assert.Equal("HTTP/2", r.Protocol));
    }

    [Fact]
    public async Task Watch_WithoutResourceVersion_StartsWithAddedForTheCurrentState()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        fake.Apply(Service("shop", "b"));
        fake.Delete("v1", "Service", "shop", "a");

        using var cts = new CancellationTokenSource(Deadline);
        var response = client.CoreV1.WatchListServiceForAllNamespacesAsync(onError: e => throw e, cancellationToken: cts.Token);
        await foreach (var (type, svc) in response)
        {
            Assert.Equal((WatchEventType.Added, "b"), (type, svc.Metadata.Name));
            break;
        }
    }

    [Fact]
    public async Task Watch_LabelSelector_ObjectLeavingTheSelectorIsDeletedAndEnteringIsAdded()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        var blue = KubeJson.Pod("shop", "p1", new Dictionary<string, string> { ["color"] = "blue" }, "web", "10.0.0.1");
        fake.Apply(blue);
        var list = await client.CoreV1.ListNamespacedPodAsync("shop", labelSelector: "color=blue");
        Assert.Single(list.Items);
        Assert.Empty((await client.CoreV1.ListNamespacedPodAsync("shop", labelSelector: "color in (red,green)")).Items);

        fake.Apply(KubeJson.Pod("shop", "p1", new Dictionary<string, string> { ["color"] = "red" }, "web", "10.0.0.1"));
        fake.Apply(KubeJson.Pod("shop", "p1", new Dictionary<string, string> { ["color"] = "blue" }, "web", "10.0.0.2"));

        using var cts = new CancellationTokenSource(Deadline);
        var seen = new List<(WatchEventType, string?)>();
        var response = client.CoreV1.WatchListNamespacedPodAsync("shop", labelSelector: "color=blue", resourceVersion: list.Metadata.ResourceVersion, onError: e => throw e, cancellationToken: cts.Token);
        await foreach (var (type, pod) in response)
        {
            seen.Add((type, pod.Status.PodIP));
            if (seen.Count == 2)
            {
                break;
            }
        }
        Assert.Equal([(WatchEventType.Deleted, "10.0.0.1"), (WatchEventType.Added, "10.0.0.2")], seen);
    }

    [Fact]
    public async Task Watch_AllowWatchBookmarks_BookmarksCarryTheCurrentVersionAndOnlyWhenAsked()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync(new FakeKubernetesApiServerOptions { BookmarkInterval = TimeSpan.FromMilliseconds(200) });
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        var rv = (await client.CoreV1.ListNamespacedServiceAsync("shop")).Metadata.ResourceVersion;

        using var cts = new CancellationTokenSource(Deadline);
        var plain = client.CoreV1.WatchListNamespacedServiceAsync("shop", resourceVersion: rv, onError: e => throw e, cancellationToken: cts.Token).GetAsyncEnumerator(cts.Token);
        var firstPlain = plain.MoveNextAsync().AsTask();

        var bookmarks = 0;
        var response = client.CoreV1.WatchListNamespacedServiceAsync("shop", resourceVersion: rv, allowWatchBookmarks: true, onError: e => throw e, cancellationToken: cts.Token);
        await foreach (var (type, svc) in response)
        {
            Assert.Equal(WatchEventType.Bookmark, type);
            Assert.Equal(rv, svc.Metadata.ResourceVersion);
            if (++bookmarks == 2)
            {
                break;
            }
        }
        var asked = await fake.WaitForRequestAsync(r => r.IsWatch && r.QueryValue("allowWatchBookmarks") == "true", Deadline);
        Assert.Equal(("services", "shop"), (asked.Resource, asked.Namespace));

        // The watch that did not ask saw two bookmark intervals pass without a bookmark: its first event is the next change.
        fake.Apply(Service("shop", "b"));
        Assert.True(await firstPlain);
        Assert.Equal((WatchEventType.Added, "b"), (plain.Current.Item1, plain.Current.Item2.Metadata.Name));
        await plain.DisposeAsync();
    }

    [Fact]
    public async Task Watch_FromCompactedResourceVersion_SurfacesExpired410AsKubernetesException()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        var rv = (await client.CoreV1.ListNamespacedServiceAsync("shop")).Metadata.ResourceVersion;
        fake.Apply(Service("shop", "b"));
        fake.Compact();

        using var cts = new CancellationTokenSource(Deadline);
        var errors = new List<Exception>();
        var events = 0;
        var response = client.CoreV1.WatchListNamespacedServiceAsync("shop", resourceVersion: rv, onError: errors.Add, cancellationToken: cts.Token);
        await foreach (var _ in response)
        {
            events++;
        }

        // The stream ended by itself after the ERROR event, with no object events.
        Assert.Equal(0, events);
        var error = Assert.IsType<KubernetesException>(Assert.Single(errors));
        Assert.Equal(410, error.Status.Code);
        Assert.Equal("Expired", error.Status.Reason);

        // A watch from the compaction point itself is still valid, and so is an exact list of the current version.
        var current = fake.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var exactNow = await client.CoreV1.ListNamespacedServiceAsync("shop", resourceVersion: current, resourceVersionMatch: "Exact");
        Assert.Equal(2, exactNow.Items.Count);
        var exactOld = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.ListNamespacedServiceAsync("shop", resourceVersion: rv, resourceVersionMatch: "Exact"));
        Assert.Equal(HttpStatusCode.Gone, exactOld.Response.StatusCode);
        Assert.Equal("Expired", JsonNode.Parse(exactOld.Response.Content)!["reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task List_PagedWithLimitAndContinue_ShowsOneConsistentVersion_AndExactListRebuildsAnOlderOne()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        fake.Apply(Service("shop", "b"));
        fake.Apply(Service("shop", "c"));

        var first = await client.CoreV1.ListNamespacedServiceAsync("shop", limit: 2);
        Assert.Equal(["a", "b"], first.Items.Select(s => s.Metadata.Name));
        Assert.Equal(1, first.Metadata.RemainingItemCount);
        fake.Delete("v1", "Service", "shop", "c");
        fake.Apply(Service("shop", "d"));

        var rest = await client.CoreV1.ListNamespacedServiceAsync("shop", continueParameter: first.Metadata.ContinueProperty, limit: 2);
        Assert.Equal(["c"], rest.Items.Select(s => s.Metadata.Name));
        Assert.Equal(first.Metadata.ResourceVersion, rest.Metadata.ResourceVersion);
        Assert.Null(rest.Metadata.ContinueProperty);

        var exact = await client.CoreV1.ListNamespacedServiceAsync("shop", resourceVersion: first.Metadata.ResourceVersion, resourceVersionMatch: "Exact");
        Assert.Equal(["a", "b", "c"], exact.Items.Select(s => s.Metadata.Name));
        Assert.Equal(["a", "b", "d"], (await client.CoreV1.ListNamespacedServiceAsync("shop")).Items.Select(s => s.Metadata.Name));

        fake.Compact();
        var expired = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.ListNamespacedServiceAsync("shop", continueParameter: first.Metadata.ContinueProperty));
        Assert.Equal(HttpStatusCode.Gone, expired.Response.StatusCode);
    }

    [Fact]
    public async Task Watch_SendInitialEvents_EndsTheInitialAddedWithAnAnnotatedBookmark()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync(new FakeKubernetesApiServerOptions { BookmarkInterval = TimeSpan.FromMinutes(5) });
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        using var cts = new CancellationTokenSource(Deadline);
        var seen = new List<(WatchEventType, string?)>();
        var response = client.CoreV1.WatchListNamespacedServiceAsync("shop", allowWatchBookmarks: true, resourceVersionMatch: "NotOlderThan", sendInitialEvents: true, onError: e => throw e, cancellationToken: cts.Token);
        await foreach (var (type, svc) in response)
        {
            seen.Add((type, type == WatchEventType.Bookmark ? svc.Metadata.Annotations?["k8s.io/initial-events-end"] : svc.Metadata.Name));
            if (type == WatchEventType.Bookmark)
            {
                break;
            }
        }
        Assert.Equal([(WatchEventType.Added, "a"), (WatchEventType.Bookmark, "true")], seen);
    }

    [Fact]
    public async Task RequestFault_Forbidden_AnswersTheRbacStatus_ForTheChosenRequestsOnly()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.SetRequestFault(r => r.Resource == "secrets" ? FakeKubernetesStatusException.Forbidden(r) : null);

        var denied = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.ReadNamespacedSecretAsync("cacerts", "mesh-system"));
        Assert.Equal(HttpStatusCode.Forbidden, denied.Response.StatusCode);
        var status = JsonNode.Parse(denied.Response.Content)!;
        Assert.Equal("Forbidden", status["reason"]!.GetValue<string>());
        Assert.Contains("cannot get resource \"secrets\" in API group \"\" in the namespace \"mesh-system\"", status["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Empty((await client.CoreV1.ListNamespacedServiceAsync("shop")).Items);

        fake.SetRequestFault(null);
        var missing = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.ReadNamespacedSecretAsync("cacerts", "mesh-system"));
        Assert.Equal(HttpStatusCode.NotFound, missing.Response.StatusCode);
    }

    [Fact]
    public async Task Builders_ReadBackThroughTheClientsTypedModels()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        var deleting = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        fake.Apply(KubeJson.Node("node-1", "eu-west", "eu-west-1a"));
        fake.Apply(KubeJson.Pod("shop", "reviews-1", new Dictionary<string, string> { ["app"] = "reviews", ["version"] = "v2" }, "reviews-sa", "10.1.0.7", "node-1", deleting));
        fake.Apply(KubeJson.Service("shop", "reviews", [new ServicePortSpec(9080, "grpc-api", "grpc", "api")], new Dictionary<string, string> { ["app"] = "reviews" }));
        fake.Apply(KubeJson.EndpointSlice("shop", "reviews-abc", "reviews",
            [new EndpointSpec("10.1.0.7", Ready: false, Serving: true, Terminating: true, PodName: "reviews-1", NodeName: "node-1", Zone: "eu-west-1a")],
            [new EndpointPortSpec(9080, "grpc-api", "grpc")]));

        var node = await client.CoreV1.ReadNodeAsync("node-1");
        Assert.Equal("eu-west-1a", node.Metadata.Labels["topology.kubernetes.io/zone"]);
        Assert.Equal("eu-west", node.Metadata.Labels["topology.kubernetes.io/region"]);

        var pod = await client.CoreV1.ReadNamespacedPodAsync("reviews-1", "shop");
        Assert.Equal(("reviews-sa", "10.1.0.7", "node-1", "v2"), (pod.Spec.ServiceAccountName, pod.Status.PodIP, pod.Spec.NodeName, pod.Metadata.Labels["version"]));
        Assert.Equal(deleting.UtcDateTime, pod.Metadata.DeletionTimestamp);

        var svc = await client.CoreV1.ReadNamespacedServiceAsync("reviews", "shop");
        Assert.Equal(("grpc-api", "grpc", "api"), (svc.Spec.Ports[0].Name, svc.Spec.Ports[0].AppProtocol, svc.Spec.Ports[0].TargetPort.Value));

        var slices = await client.DiscoveryV1.ListNamespacedEndpointSliceAsync("shop", labelSelector: "kubernetes.io/service-name=reviews");
        var endpoint = Assert.Single(Assert.Single(slices.Items).Endpoints);
        Assert.Equal((false, true, true), (endpoint.Conditions.Ready, endpoint.Conditions.Serving, endpoint.Conditions.Terminating));
        Assert.Equal(("Pod", "reviews-1", "shop", "node-1", "eu-west-1a"), (endpoint.TargetRef.Kind, endpoint.TargetRef.Name, endpoint.TargetRef.NamespaceProperty, endpoint.NodeName, endpoint.Zone));
        Assert.Equal((9080, "grpc-api", "grpc"), (slices.Items[0].Ports[0].Port ?? 0, slices.Items[0].Ports[0].Name, slices.Items[0].Ports[0].AppProtocol));

        // A graceful deletion: the pod stays, terminating, until it is deleted.
        fake.Apply(KubeJson.Pod("shop", "reviews-2", serviceAccountName: "reviews-sa"));
        fake.MarkDeleting("v1", "Pod", "shop", "reviews-2", gracePeriodSeconds: 30);
        var terminating = await client.CoreV1.ReadNamespacedPodAsync("reviews-2", "shop");
        Assert.NotNull(terminating.Metadata.DeletionTimestamp);
        Assert.Equal(30, terminating.Metadata.DeletionGracePeriodSeconds);
    }

    [Fact]
    public async Task Replace_WithStaleResourceVersion_Conflict409_AndCreateTwice_AlreadyExists409()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        var created = await client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "cfg" }, Data = new Dictionary<string, string> { ["k"] = "1" } }, "shop");
        Assert.False(string.IsNullOrEmpty(created.Metadata.Uid));
        Assert.NotNull(created.Metadata.CreationTimestamp);

        var stale = await client.CoreV1.ReadNamespacedConfigMapAsync("cfg", "shop");
        stale.Data["k"] = "2";
        var replaced = await client.CoreV1.ReplaceNamespacedConfigMapAsync(stale, "cfg", "shop");
        Assert.NotEqual(stale.Metadata.ResourceVersion, replaced.Metadata.ResourceVersion);
        Assert.Equal(created.Metadata.Uid, replaced.Metadata.Uid);

        var unchanged = await client.CoreV1.ReplaceNamespacedConfigMapAsync(replaced, "cfg", "shop");
        Assert.Equal(replaced.Metadata.ResourceVersion, unchanged.Metadata.ResourceVersion);

        stale.Data["k"] = "3";
        var conflict = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.ReplaceNamespacedConfigMapAsync(stale, "cfg", "shop"));
        Assert.Equal(HttpStatusCode.Conflict, conflict.Response.StatusCode);
        Assert.Equal("Conflict", JsonNode.Parse(conflict.Response.Content)!["reason"]!.GetValue<string>());
        Assert.Equal("2", (await client.CoreV1.ReadNamespacedConfigMapAsync("cfg", "shop")).Data["k"]);

        var exists = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "cfg" } }, "shop"));
        Assert.Equal(HttpStatusCode.Conflict, exists.Response.StatusCode);
        Assert.Equal("AlreadyExists", JsonNode.Parse(exists.Response.Content)!["reason"]!.GetValue<string>());

        var missing = await Assert.ThrowsAsync<HttpOperationException>(() => client.CoreV1.ReadNamespacedConfigMapAsync("nope", "shop"));
        Assert.Equal(HttpStatusCode.NotFound, missing.Response.StatusCode);
        Assert.Equal("NotFound", JsonNode.Parse(missing.Response.Content)!["reason"]!.GetValue<string>());

        var deleted = await client.CoreV1.DeleteNamespacedConfigMapAsync("cfg", "shop");
        Assert.Equal("Success", deleted.Status);
        Assert.Null(fake.TryGet("v1", "ConfigMap", "shop", "cfg"));
    }

    [Fact]
    public async Task IstioCustomResource_StoredOnceAndServedAtEveryVersion_MergePatchApplies()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        var vs = new JsonObject
        {
            ["apiVersion"] = "networking.istio.io/v1",
            ["kind"] = "VirtualService",
            ["metadata"] = new JsonObject { ["name"] = "reviews" },
            ["spec"] = new JsonObject { ["hosts"] = new JsonArray("reviews") },
        };
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(vs, "networking.istio.io", "v1", "shop", "virtualservices");

        var beta = (JsonElement)await client.CustomObjects.GetNamespacedCustomObjectAsync("networking.istio.io", "v1beta1", "shop", "virtualservices", "reviews");
        Assert.Equal("networking.istio.io/v1beta1", beta.GetProperty("apiVersion").GetString());
        Assert.Equal("reviews", beta.GetProperty("spec").GetProperty("hosts")[0].GetString());

        var patch = new V1Patch("""{"spec":{"gateways":["mesh"]}}""", V1Patch.PatchType.MergePatch);
        await client.CustomObjects.PatchNamespacedCustomObjectAsync(patch, "networking.istio.io", "v1alpha3", "shop", "virtualservices", "reviews");
        var stored = fake.TryGet("networking.istio.io/v1", "VirtualService", "shop", "reviews")!;
        Assert.Equal("mesh", stored["spec"]!["gateways"]![0]!.GetValue<string>());
        Assert.Equal("reviews", stored["spec"]!["hosts"]![0]!.GetValue<string>());
        Assert.Equal(2, stored["metadata"]!["generation"]!.GetValue<long>());
    }

    [Fact]
    public async Task TokenReview_AnswersLikeTheRealServer_ForRightAndWrongAudienceAndUnknownToken()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.AddServiceAccountToken("tok-a", "shop", "orders", ["istio-ca", "other"], podName: "orders-1");

        var ok = await Review(client, "tok-a", "istio-ca", "unrelated");
        Assert.True(ok.Status.Authenticated);
        Assert.Equal("system:serviceaccount:shop:orders", ok.Status.User.Username);
        Assert.Equal(["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"], ok.Status.User.Groups);
        Assert.Equal(["orders-1"], ok.Status.User.Extra["authentication.kubernetes.io/pod-name"]);
        Assert.Equal(["istio-ca"], ok.Status.Audiences);

        var wrongAudience = await Review(client, "tok-a", "someone-else");
        Assert.NotEqual(true, wrongAudience.Status.Authenticated);
        Assert.Null(wrongAudience.Status.User?.Username);
        Assert.Contains("audience", wrongAudience.Status.Error, StringComparison.Ordinal);

        // No audiences in the review: checked against the API server's own, which a token for istio-ca does not carry.
        var noAudience = await Review(client, "tok-a");
        Assert.NotEqual(true, noAudience.Status.Authenticated);

        var unknown = await Review(client, "forged", "istio-ca");
        Assert.NotEqual(true, unknown.Status.Authenticated);
        Assert.False(string.IsNullOrEmpty(unknown.Status.Error));

        fake.AddServiceAccountToken("tok-old", "shop", "orders", ["istio-ca"], expiresAt: DateTimeOffset.UtcNow.AddMinutes(-1));
        var expired = await Review(client, "tok-old", "istio-ca");
        Assert.NotEqual(true, expired.Status.Authenticated);
        Assert.Contains("expired", expired.Status.Error, StringComparison.Ordinal);

        Assert.True(fake.RemoveServiceAccountToken("tok-a"));
        Assert.NotEqual(true, (await Review(client, "tok-a", "istio-ca")).Status.Authenticated);

        fake.FailTokenReviews(500);
        var failed = await Assert.ThrowsAsync<HttpOperationException>(() => Review(client, "tok-a", "istio-ca"));
        Assert.Equal(HttpStatusCode.InternalServerError, failed.Response.StatusCode);
    }

    private static Task<V1TokenReview> Review(k8s.Kubernetes client, string token, params string[] audiences) =>
        client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview
        {
            Spec = new V1TokenReviewSpec { Token = token, Audiences = audiences.Length == 0 ? null : audiences },
        });

    [Fact]
    public async Task LeaseLock_OneLeaderAtATime_TheOtherTakesOverWhenItStopsRenewing()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var clientA = Client(fake);
        using var clientB = Client(fake);
        LeaderElectionConfig Config(k8s.Kubernetes c, string id) => new(new LeaseLock(c, "mesh-system", "mesh-leader", id))
        {
            LeaseDuration = TimeSpan.FromSeconds(2),
            RenewDeadline = TimeSpan.FromSeconds(1),
            RetryPeriod = TimeSpan.FromMilliseconds(200),
        };
        using var electorA = new LeaderElector(Config(clientA, "replica-a"));
        using var electorB = new LeaderElector(Config(clientB, "replica-b"));
        var aLeads = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var bLeads = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        electorA.OnStartedLeading += () => aLeads.TrySetResult();
        electorB.OnStartedLeading += () => bLeads.TrySetResult();

        using var stopA = new CancellationTokenSource();
        using var stopB = new CancellationTokenSource();
        var runA = electorA.RunUntilLeadershipLostAsync(stopA.Token);
        await aLeads.Task.WaitAsync(Deadline);
        var runB = electorB.RunUntilLeadershipLostAsync(stopB.Token);

        // While A renews, B only observes: wait for A's renewals to move the lease on a few times.
        var rvAfterLead = fake.ResourceVersion;
        await fake.WaitUntilAsync(() => fake.ResourceVersion >= rvAfterLead + 3, Deadline, () => "three renewals of the lease");
        Assert.False(bLeads.Task.IsCompleted);
        Assert.Equal("replica-a", fake.TryGet("coordination.k8s.io/v1", "Lease", "mesh-system", "mesh-leader")!["spec"]!["holderIdentity"]!.GetValue<string>());

        await stopA.CancelAsync();
        await bLeads.Task.WaitAsync(Deadline);
        Assert.Equal("replica-b", fake.TryGet("coordination.k8s.io/v1", "Lease", "mesh-system", "mesh-leader")!["spec"]!["holderIdentity"]!.GetValue<string>());
        await stopB.CancelAsync();
        await Task.WhenAll(runA, runB).WaitAsync(Deadline).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    [Fact]
    public async Task Request_WithWrongOrMissingBearerToken_Gets401Status()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        var config = KubernetesClientConfiguration.BuildConfigFromConfigFile(fake.KubeconfigPath);
        config.AccessToken = "not-the-token";
        using var wrong = new k8s.Kubernetes(config);
        var denied = await Assert.ThrowsAsync<HttpOperationException>(() => wrong.CoreV1.ListNamespacedServiceAsync("shop"));
        Assert.Equal(HttpStatusCode.Unauthorized, denied.Response.StatusCode);
        Assert.Equal("Unauthorized", JsonNode.Parse(denied.Response.Content)!["reason"]!.GetValue<string>());

        // No token at all, over a TLS connection that trusts only the fake's CA.
        using var ca = X509Certificate2.CreateFromPem(fake.CertificateAuthorityPem);
        using var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, cert, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return cert is not null && chain.Build(cert);
            },
        };
        using var http = new HttpClient(handler);
        using var anonymous = await http.GetAsync(new Uri(fake.Url, "/api/v1/services"));
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal(2, fake.Requests.Count(r => r.Verb == "unauthorized"));
    }

    [Fact]
    public async Task DropWatches_EndsTheClientsEnumeration_AndCountsOpenWatches()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        using var cts = new CancellationTokenSource(Deadline);
        var errors = new List<Exception>();
        var watching = Task.Run(async () =>
        {
            var response = client.CoreV1.WatchListServiceForAllNamespacesAsync(onError: errors.Add, cancellationToken: cts.Token);
            await foreach (var _ in response)
            {
            }
        });
        await fake.WaitForWatchersAsync("services", 1, Deadline);
        Assert.Equal(1, fake.DropWatches());

        // Ends (by an exception from the reset stream, or the end of it) long before the test's own deadline.
        var ended = await Task.WhenAny(watching, Task.Delay(Deadline));
        Assert.Same(watching, ended);
        Assert.False(cts.IsCancellationRequested);
        await fake.WaitUntilAsync(() => fake.OpenWatches("services") == 0, Deadline);
    }

    [Fact]
    public async Task Watch_OverHttp11_IsOneJsonObjectPerLine_AndDropClosesTheConnection()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Service("shop", "a"));
        using var ca = X509Certificate2.CreateFromPem(fake.CertificateAuthorityPem);
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, _) =>
        {
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (cert is null)
            {
                return false;
            }
            using var presented = new X509Certificate2(cert);
            return chain.Build(presented);
        };
        using var http = new HttpClient(handler) { DefaultRequestVersion = HttpVersion.Version11, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fake.Token);
        using var cts = new CancellationTokenSource(Deadline);
        using var response = await http.GetAsync(new Uri(fake.Url, "/api/v1/namespaces/shop/services?watch=1"), HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Headers.TransferEncodingChunked);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var line = JsonNode.Parse((await reader.ReadLineAsync(cts.Token))!)!;
        Assert.Equal("ADDED", line["type"]!.GetValue<string>());
        Assert.Equal(("Service", "v1", "a"), (line["object"]!["kind"]!.GetValue<string>(), line["object"]!["apiVersion"]!.GetValue<string>(), line["object"]!["metadata"]!["name"]!.GetValue<string>()));
        Assert.Equal("HTTP/1.1", fake.Requests.Single(r => r.IsWatch).Protocol);

        fake.DropWatches();
        // An aborted HTTP/1.1 response is cut mid-chunk: the reader fails rather than seeing a clean end.
        await Assert.ThrowsAnyAsync<IOException>(async () => await reader.ReadLineAsync(cts.Token));
    }

    [Fact]
    public async Task SilenceWatches_HoldsEventsUntilSilenceEnds()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync(new FakeKubernetesApiServerOptions { BookmarkInterval = TimeSpan.FromMilliseconds(100) });
        using var client = Client(fake);
        using var cts = new CancellationTokenSource(Deadline);
        var rv = (await client.CoreV1.ListNamespacedServiceAsync("shop")).Metadata.ResourceVersion;
        await using var events = client.CoreV1.WatchListNamespacedServiceAsync("shop", resourceVersion: rv, allowWatchBookmarks: true, onError: e => throw e, cancellationToken: cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await events.MoveNextAsync());
        Assert.Equal(WatchEventType.Bookmark, events.Current.Item1);

        fake.SilenceWatches(true);

        // A bookmark sent before the silence began may still be on its way: those are read first (a few at most), until
        // twenty bookmark intervals pass with nothing, where a live stream would have sent a bookmark.
        var next = events.MoveNextAsync().AsTask();
        for (var early = 0; ; early++)
        {
            try
            {
                Assert.True(await next.WaitAsync(TimeSpan.FromSeconds(2)));
            }
            catch (TimeoutException)
            {
                break;
            }

            Assert.Equal(WatchEventType.Bookmark, events.Current.Item1);
            Assert.True(early < 3, "bookmarks kept coming while the watches were silenced");
            next = events.MoveNextAsync().AsTask();
        }

        // The stream is silent now: an object applied meanwhile is held, not sent.
        fake.Apply(Service("shop", "a"));
        await Assert.ThrowsAsync<TimeoutException>(() => next.WaitAsync(TimeSpan.FromSeconds(2)));
        Assert.Equal(1, fake.OpenWatches("services"));

        fake.SilenceWatches(false);
        Assert.True(await next.WaitAsync(Deadline));
        while (events.Current.Item1 == WatchEventType.Bookmark)
        {
            Assert.True(await events.MoveNextAsync());
        }
        Assert.Equal((WatchEventType.Added, "a"), (events.Current.Item1, events.Current.Item2.Metadata.Name));
    }

    [Theory]
    [InlineData(FakeApiServerOutage.Refuse)]
    [InlineData(FakeApiServerOutage.Unavailable)]
    public async Task GoDown_ThenComeBack_SamePortServesTheSameObjects(FakeApiServerOutage outage)
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        using var client = Client(fake);
        fake.Apply(Service("shop", "a"));
        Assert.Single((await client.CoreV1.ListNamespacedServiceAsync("shop")).Items);
        var url = fake.Url;

        await fake.GoDownAsync(outage);
        var down = await Assert.ThrowsAnyAsync<Exception>(() => client.CoreV1.ListNamespacedServiceAsync("shop"));
        if (outage == FakeApiServerOutage.Unavailable)
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, Assert.IsType<HttpOperationException>(down).Response.StatusCode);
        }
        else
        {
            Assert.IsType<HttpRequestException>(down);
        }

        await fake.ComeBackAsync();
        Assert.Equal(url, fake.Url);
        Assert.Single((await client.CoreV1.ListNamespacedServiceAsync("shop")).Items);
    }

    [Fact]
    public async Task Kubectl_GetAndApply_AgainstTheFake()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Service("shop", "existing"));

        var (code, output, error) = await Kubectl(fake, "get", "services", "-A", "-o", "json");
        Assert.True(code == 0, $"kubectl get failed ({code}): {error}");
        var list = JsonNode.Parse(output)!;
        Assert.Equal("existing", list["items"]![0]!["metadata"]!["name"]!.GetValue<string>());

        var dir = Path.GetDirectoryName(fake.KubeconfigPath)!;
        var manifest = Path.Combine(dir, "svc.yaml");
        await File.WriteAllTextAsync(manifest, """
            apiVersion: v1
            kind: Service
            metadata:
              name: reviews
              namespace: shop
            spec:
              selector:
                app: reviews
              ports:
              - name: http
                port: 9080
                appProtocol: http
            """);
        (code, _, error) = await Kubectl(fake, "apply", "-f", manifest, "--validate=false");
        Assert.True(code == 0, $"kubectl apply (create) failed ({code}): {error}");
        Assert.Equal(9080, fake.TryGet("v1", "Service", "shop", "reviews")!["spec"]!["ports"]![0]!["port"]!.GetValue<int>());

        await File.WriteAllTextAsync(manifest, (await File.ReadAllTextAsync(manifest)).Replace("9080", "9081", StringComparison.Ordinal));
        (code, _, error) = await Kubectl(fake, "apply", "-f", manifest, "--validate=false");
        Assert.True(code == 0, $"kubectl apply (patch) failed ({code}): {error}");
        Assert.Equal(9081, fake.TryGet("v1", "Service", "shop", "reviews")!["spec"]!["ports"]![0]!["port"]!.GetValue<int>());
        Assert.Contains(fake.Requests, r => r.Verb == "patch" && r.Resource == "services");

        // An Istio custom resource: found through /apis discovery, created, then listed by its short name.
        var vs = Path.Combine(dir, "vs.yaml");
        await File.WriteAllTextAsync(vs, """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: reviews
              namespace: shop
            spec:
              hosts: [reviews]
              http:
              - route:
                - destination: {host: reviews, subset: v2}
            """);
        (code, _, error) = await Kubectl(fake, "apply", "-f", vs, "--validate=false");
        Assert.True(code == 0, $"kubectl apply (VirtualService) failed ({code}): {error}");
        Assert.Equal("v2", fake.TryGet("networking.istio.io/v1", "VirtualService", "shop", "reviews")!["spec"]!["http"]![0]!["route"]![0]!["destination"]!["subset"]!.GetValue<string>());
        (code, output, error) = await Kubectl(fake, "get", "vs", "-n", "shop", "-o", "json");
        Assert.True(code == 0, $"kubectl get vs failed ({code}): {error}");
        Assert.Equal("reviews", JsonNode.Parse(output)!["items"]![0]!["metadata"]!["name"]!.GetValue<string>());
    }

    private static async Task<(int Code, string Output, string Error)> Kubectl(FakeKubernetesApiServer fake, params string[] args)
    {
        var kubectl = FindOnPath("kubectl")
            ?? throw new InvalidOperationException("kubectl is not installed: run `apt-get install kubernetes-client` (.ci/run does this on a fresh machine).");
        var start = new ProcessStartInfo(kubectl) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("--kubeconfig");
        start.ArgumentList.Add(fake.KubeconfigPath);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        // kubectl's discovery cache goes to the test's temp directory, not the user's home.
        start.Environment["KUBECACHEDIR"] = Path.Combine(Path.GetDirectoryName(fake.KubeconfigPath)!, "cache");
        start.Environment["HOME"] = Path.GetDirectoryName(fake.KubeconfigPath)!;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await output, await error);
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
}
