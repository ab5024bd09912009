using System.Collections.Immutable;
using System.Text.Json;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>Istio objects from the API go through the folder's validation, but one invalid object never rejects the rest.</summary>
public sealed class KubernetesObjectValidationTests
{
    private const string ReviewsEntry = """{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"reviews","namespace":"shop","uid":"u1","resourceVersion":"7","managedFields":[{"manager":"kubectl"}]},"spec":{"hosts":["reviews"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}],"resolution":"STATIC","endpoints":[{"address":"10.0.0.1"}]},"status":{"conditions":[]}}""";
    private const string RatingsEntry = """{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"ratings","namespace":"shop"},"spec":{"hosts":["ratings"],"ports":[{"number":80,"name":"http","protocol":"HTTP"}],"resolution":"STATIC","endpoints":[{"address":"10.0.0.2"}]}}""";
    private const string GoodRoute = """{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"ratings","namespace":"shop"},"spec":{"hosts":["ratings"],"http":[{"route":[{"destination":{"host":"ratings"}}]}]}}""";

    // A weight above 100 gets past a missing webhook; the folder's loader names the field.
    private const string BadRoute = """{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"shop"},"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"},"weight":"lots"}]}]}}""";

    [Fact]
    public void LoadKubernetesObjects_InvalidVirtualService_ReportedWithNamespaceNameAndFieldPath_RestApplies()
    {
        var result = YamlConfigLoader.LoadKubernetesObjects([Text("ServiceEntry", ReviewsEntry), Text("ServiceEntry", RatingsEntry), Text("VirtualService", GoodRoute), Text("VirtualService", BadRoute)], YamlConfig.Empty, []);

        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Equal("VirtualService shop/reviews", error.File);
        Assert.StartsWith("VirtualService shop/reviews: spec.http[0].route[0].weight: ", error.Message, StringComparison.Ordinal);
        Assert.Equal(["VirtualService shop/reviews"], result.Ignored.ToArray());
        Assert.Equal(["ratings.shop.svc.cluster.local"], result.Config.VirtualServices.SelectMany(v => v.Hosts).ToArray());
        Assert.Equal(2, result.Config.ServiceEntries.Length);
    }

    [Fact]
    public void LoadKubernetesObjects_ServiceEntryDroppedForAnError_VirtualServiceRoutingToItIsDroppedToo()
    {
        var brokenRatings = RatingsEntry.Replace("\"number\":80", "\"number\":0", StringComparison.Ordinal);

        var result = YamlConfigLoader.LoadKubernetesObjects([Text("ServiceEntry", ReviewsEntry), Text("ServiceEntry", brokenRatings), Text("VirtualService", GoodRoute)], YamlConfig.Empty, []);

        Assert.Equal(["ServiceEntry shop/ratings", "VirtualService shop/ratings"], result.Ignored.ToArray());
        Assert.Contains(result.Errors, e => e.File == "ServiceEntry shop/ratings" && e.Message.Contains("spec.ports[0]", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.File == "VirtualService shop/ratings" && e.Message.Contains("host ratings.shop.svc.cluster.local is not declared by any ServiceEntry", StringComparison.Ordinal));
        Assert.Equal(["reviews.shop.svc.cluster.local"], result.Config.ServiceEntries.SelectMany(s => s.Hosts).ToArray());
        Assert.Empty(result.Config.VirtualServices);
    }

    [Fact]
    public void LoadKubernetesObjects_HostAlreadyInTheFolder_TheObjectIsBlamedAndDropped_FolderKept()
    {
        var folder = YamlConfigLoader.Load([("reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: reviews-pinned, namespace: shop}
            spec:
              hosts: [reviews]
              ports: [{number: 80, name: http, protocol: HTTP}]
            """)]);
        Assert.False(folder.HasErrors);

        var result = YamlConfigLoader.LoadKubernetesObjects([Text("ServiceEntry", ReviewsEntry), Text("ServiceEntry", RatingsEntry)], folder.Config, []);

        var error = Assert.Single(result.Errors);
        Assert.Equal("ServiceEntry shop/reviews", error.File);
        Assert.Contains("spec.hosts: host reviews.shop.svc.cluster.local is already declared by ServiceEntry shop/reviews-pinned", error.Message, StringComparison.Ordinal);
        Assert.Equal(["ratings.shop.svc.cluster.local"], result.Config.ServiceEntries.SelectMany(s => s.Hosts).ToArray());
    }

    [Fact]
    public void LoadKubernetesObjects_VirtualServiceToAKubernetesService_IsValid()
    {
        var service = new ServiceEntryModel("shop", "ratings", ["ratings.shop.svc.cluster.local"], [new ServicePort(80, "http", "HTTP", 8080)], ImmutableSortedDictionary<string, string>.Empty, [], "STATIC");

        var result = YamlConfigLoader.LoadKubernetesObjects([Text("VirtualService", GoodRoute)], YamlConfig.Empty, [service]);

        Assert.Empty(result.Errors);
        Assert.Single(result.Config.VirtualServices);
        Assert.Empty(result.Config.ServiceEntries); // the Service itself is the store's to merge, not a result of the objects
    }

    [Fact]
    public void LoadKubernetesObjects_DestinationRuleFromAnotherNamespace_CannotTurnAServiceToPlaintext()
    {
        // The attacker can write Istio objects in namespace "a" only; its name sorts before the owner's namespace "shop".
        var service = new ServiceEntryModel("shop", "ratings", ["ratings.shop.svc.cluster.local"], [new ServicePort(80, "http", "HTTP", 8080)], ImmutableSortedDictionary<string, string>.Empty, [], "STATIC");
        const string Plaintext = """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"x","namespace":"a","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{"host":"ratings.shop.svc.cluster.local","trafficPolicy":{"tls":{"mode":"DISABLE"}}}}""";
        const string Owner = """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"ratings","namespace":"shop","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"host":"ratings","trafficPolicy":{"tls":{"mode":"ISTIO_MUTUAL"}}}}""";
        const string Root = """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"mesh-wide","namespace":"istio-system"},"spec":{"host":"reviews.shop.svc.cluster.local"}}""";
        var reviews = service with { Name = "reviews", Hosts = ["reviews.shop.svc.cluster.local"] };

        var result = YamlConfigLoader.LoadKubernetesObjects([Text("DestinationRule", Plaintext), Text("DestinationRule", Owner), Text("DestinationRule", Root)], YamlConfig.Empty, [service, reviews]);

        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Equal("DestinationRule a/x", error.File);
        Assert.Contains("spec.host: ratings.shop.svc.cluster.local belongs to namespace shop", error.Message, StringComparison.Ordinal);
        Assert.Equal(["DestinationRule a/x"], result.Ignored.ToArray());
        Assert.Equal(["ratings", "mesh-wide"], result.Config.DestinationRules.Select(r => r.Name).ToArray());
        Assert.Equal(UpstreamTlsMode.IstioMutual, result.Config.DestinationRules[0].TlsMode);
    }

    [Fact]
    public void LoadKubernetesObjects_VirtualServiceFromAnotherNamespace_CannotRerouteAService()
    {
        var service = new ServiceEntryModel("shop", "ratings", ["ratings.shop.svc.cluster.local"], [new ServicePort(80, "http", "HTTP", 8080)], ImmutableSortedDictionary<string, string>.Empty, [], "STATIC");
        const string Hijack = """{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"x","namespace":"a"},"spec":{"hosts":["ratings.shop.svc.cluster.local"],"http":[{"route":[{"destination":{"host":"ratings.shop.svc.cluster.local"}}]}]}}""";

        var result = YamlConfigLoader.LoadKubernetesObjects([Text("VirtualService", Hijack), Text("VirtualService", GoodRoute)], YamlConfig.Empty, [service]);

        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Equal("VirtualService a/x", error.File);
        Assert.Contains("spec.hosts: ratings.shop.svc.cluster.local belongs to namespace shop", error.Message, StringComparison.Ordinal);
        Assert.Equal(["shop"], result.Config.VirtualServices.Select(v => v.Namespace).ToArray());
    }

    [Fact]
    public void LoadKubernetesObjects_TwoServiceEntriesForOneHost_TheOlderKeepsItWhateverTheNames()
    {
        const string Older = """{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"payments","namespace":"shop","creationTimestamp":"2025-05-01T00:00:00Z"},"spec":{"hosts":["api.payments.example"],"ports":[{"number":443,"name":"https","protocol":"HTTPS"}],"resolution":"DNS"}}""";
        const string Newer = """{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"aaa","namespace":"a","creationTimestamp":"2026-11-30T00:00:00Z"},"spec":{"hosts":["api.payments.example"],"ports":[{"number":443,"name":"https","protocol":"HTTPS"}],"resolution":"STATIC","endpoints":[{"address":"10.9.9.9"}]}}""";

        var result = YamlConfigLoader.LoadKubernetesObjects([Text("ServiceEntry", Newer), Text("ServiceEntry", Older)], YamlConfig.Empty, []);

        Assert.Equal(["ServiceEntry a/aaa"], result.Ignored.ToArray());
        Assert.Equal(["shop/payments"], result.Config.ServiceEntries.Select(s => $"{s.Namespace}/{s.Name}").ToArray());
    }

    [Fact]
    public void ToText_KeepsApiVersionKindNameNamespaceAndSpec_DropsStatusAndServerFields()
    {
        using var json = JsonDocument.Parse(ReviewsEntry);

        var text = KubernetesSource.ToText("ServiceEntry", new CustomObject(json.RootElement.Clone()));

        Assert.Equal("ServiceEntry shop/reviews", text.Location);
        using var trimmed = JsonDocument.Parse(text.Json);
        Assert.Equal(["apiVersion", "kind", "metadata", "spec"], trimmed.RootElement.EnumerateObject().Select(p => p.Name).ToArray());
        Assert.Equal(["name", "namespace"], trimmed.RootElement.GetProperty("metadata").EnumerateObject().Select(p => p.Name).ToArray());
    }

    private static KubernetesObjectText Text(string kind, string json)
    {
        using var document = JsonDocument.Parse(json);
        return KubernetesSource.ToText(kind, new CustomObject(document.RootElement.Clone()));
    }
}
