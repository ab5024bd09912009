using System.Collections.Immutable;
using System.Text.Json;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Route.V3;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>The store's second input: Kubernetes merged with the folder, readiness waiting for the first list.</summary>
public sealed class KubernetesConfigStoreTests
{
    private const string FolderReviews = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: reviews-pinned, namespace: shop}
        spec:
          hosts: [reviews]
          ports: [{number: 80, name: http, protocol: HTTP}]
        """;

    [Fact]
    public void HasValidConfig_KubernetesRequired_FalseUntilTheFirstKubernetesApplyEvenWithAValidFolder()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        store.RequireKubernetes(() => "the Kubernetes source has not listed Pod yet");

        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("reviews.yaml", FolderReviews)])));
        Assert.False(store.HasValidConfig);
        Assert.Equal("the Kubernetes source has not listed Pod yet", store.KubernetesPending);

        store.ApplyKubernetes([], new KubernetesServices([], [], []));

        Assert.True(store.HasValidConfig);
        Assert.Null(store.KubernetesPending);
    }

    [Fact]
    public void ApplyKubernetes_ServiceHostAlsoInTheFolder_FolderWinsWithAWarningNamingBoth()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        store.ApplyYaml(YamlConfigLoader.Load([("reviews.yaml", FolderReviews)]));

        store.ApplyKubernetes([], new KubernetesServices([Service("reviews"), Service("ratings")], [], []));

        Assert.Equal(["reviews-pinned", "ratings"], store.Current.Config.ServiceEntries.Select(s => s.Name));
        var warning = Assert.Single(store.Errors);
        Assert.True(warning.IsWarning);
        Assert.Equal("Service shop/reviews: host reviews.shop.svc.cluster.local is also declared by the config folder's ServiceEntry shop/reviews-pinned; the folder's wins and this Service is ignored", warning.Message);
    }

    [Fact]
    public void ApplyKubernetes_InvalidObject_IgnoredStoreStaysValid_FolderChangeRevalidatesTheObjects()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        store.RequireKubernetes(() => "waiting");
        store.ApplyYaml(YamlConfigLoader.Load([]));
        var reviews = Object("ServiceEntry", """{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"reviews","namespace":"shop"},"spec":{"hosts":["reviews"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}]}}""");
        var broken = Object("DestinationRule", """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"shop"},"spec":{"host":"reviews","trafficPolicy":{"loadBalancer":{"simple":"SOMETIMES"}}}}""");

        store.ApplyKubernetes([reviews, broken], new KubernetesServices([], [], []));

        Assert.True(store.HasValidConfig);
        Assert.Equal(["reviews"], store.Current.Config.ServiceEntries.Select(s => s.Name));
        Assert.Empty(store.Current.Config.DestinationRules);
        Assert.Contains(store.Errors, e => !e.IsWarning && e.File == "DestinationRule shop/reviews" && e.Message.StartsWith("DestinationRule shop/reviews: spec.trafficPolicy.loadBalancer", StringComparison.Ordinal));

        // The folder now pins the host: the same object loses to it, decided again without any Kubernetes event.
        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("reviews.yaml", FolderReviews)])));

        Assert.Equal(["reviews-pinned"], store.Current.Config.ServiceEntries.Select(s => s.Name));
        Assert.Contains(store.Errors, e => !e.IsWarning && e.File == "ServiceEntry shop/reviews" && e.Message.Contains("already declared by ServiceEntry shop/reviews-pinned", StringComparison.Ordinal));
    }

    [Fact]
    public void ApplyKubernetes_NonDefaultClusterDomain_ShortHostsResolveInIt_AndClientsReachTheServiceByItsShortNames()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance, options: new ControlPlaneOptions { Kubernetes = { ClusterDomain = "corp.example" } });
        store.ApplyYaml(YamlConfigLoader.Load([]));
        var reviews = new ServiceEntryModel("shop", "reviews", ["reviews.shop.svc.corp.example"], [new ServicePort(80, "http", "HTTP", 8080)], ImmutableSortedDictionary<string, string>.Empty, [], "STATIC");
        var rule = Object("DestinationRule", """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"shop"},"spec":{"host":"reviews","subsets":[{"name":"v1","labels":{"version":"v1"}}]}}""");
        var routes = Object("VirtualService", """{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"shop"},"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"}}]}]}}""");

        store.ApplyKubernetes([rule, routes], new KubernetesServices([reviews], [], []));

        // As istiod's ResolveShortnameToFQDN: <name>.<namespace>.svc.<domain suffix>, not .cluster.local.
        Assert.DoesNotContain(store.Errors, e => !e.IsWarning);
        Assert.Equal(["reviews.shop.svc.corp.example"], Assert.Single(store.Current.Config.VirtualServices).Hosts.ToArray());
        Assert.Equal("reviews.shop.svc.corp.example", Assert.Single(store.Current.Config.DestinationRules).Host);

        var snapshot = XdsTranslator.Translate(store.Current, 1);
        var virtualHost = Assert.Single(snapshot.Routes["outbound|80||reviews.shop.svc.corp.example"].Resource.Unpack<RouteConfiguration>().VirtualHosts);
        Assert.Equal("outbound|80|v1|reviews.shop.svc.corp.example", Assert.Single(virtualHost.Routes).Route_.Cluster);
        Assert.Subset(virtualHost.Domains.ToHashSet(), new HashSet<string> { "reviews", "reviews:80", "reviews.shop", "reviews.shop:80", "reviews.shop.svc", "reviews.shop.svc:80", "reviews.shop.svc.corp.example" });
        Assert.NotNull(snapshot.ResolveListener("reviews:80", "shop"));
        Assert.NotNull(snapshot.ResolveListener("reviews.shop:80", "other"));
        Assert.NotNull(snapshot.ResolveListener("reviews.shop.svc:80", "other"));
    }

    private static ServiceEntryModel Service(string name) =>
        new("shop", name, [$"{name}.shop.svc.cluster.local"], [new ServicePort(80, "http", "HTTP", 8080)], ImmutableSortedDictionary<string, string>.Empty, [], "STATIC");

    private static KubernetesObjectText Object(string kind, string json)
    {
        using var document = JsonDocument.Parse(json);
        return KubernetesSource.ToText(kind, new CustomObject(document.RootElement.Clone()));
    }
}
