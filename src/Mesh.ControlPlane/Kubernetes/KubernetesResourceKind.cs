using System.Text.Json;
using k8s;
using k8s.Models;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>How to list and watch one resource kind through the one <see cref="IKubernetes"/> client.</summary>
internal sealed class KubernetesResourceKind<T>
    where T : class
{
    public delegate Task<(IReadOnlyList<T> Items, string? ResourceVersion)> ListFunc(IKubernetes client, string? ns, string version, CancellationToken cancellationToken);

    public delegate IAsyncEnumerable<(WatchEventType Type, T Item)> WatchFunc(IKubernetes client, string? ns, string version, string resourceVersion, int timeoutSeconds, Action<Exception> onError, CancellationToken cancellationToken);

    public required string Kind { get; init; }

    /// <summary>Cluster-scoped kinds (Node) are watched once, whatever ControlPlane:Kubernetes:Namespaces says.</summary>
    public bool ClusterScoped { get; init; }

    /// <summary>
    /// A kind the cluster may not serve (a CRD not installed): a 404 on its list counts as an empty list, so the control
    /// plane becomes ready without Istio's CRDs, and the list is tried again with back-off until the CRD appears.
    /// </summary>
    public bool MayBeAbsent { get; init; }

    /// <summary>
    /// The API versions to read the kind at, preferred first: a kind the cluster does not serve at one (a 404) is listed at
    /// the next before it counts as absent. The core kinds have one; Istio's are served at v1 only since Istio 1.22.
    /// </summary>
    public IReadOnlyList<string> Versions { get; init; } = ["v1"];

    public required ListFunc List { get; init; }

    public required WatchFunc Watch { get; init; }

    public required Func<T, (string? Namespace, string? Name, string? ResourceVersion)> Metadata { get; init; }
}

/// <summary>The kinds the source watches: the four core kinds behind Services, and Istio's config kinds as JSON.</summary>
internal static class KubernetesKinds
{
    public static readonly KubernetesResourceKind<V1Service> Service = new()
    {
        Kind = "Service",
        List = async (client, ns, _, ct) =>
        {
            var list = ns is null
                ? await client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false)
                : await client.CoreV1.ListNamespacedServiceAsync(ns, cancellationToken: ct).ConfigureAwait(false);
            return ([.. list.Items], list.Metadata?.ResourceVersion);
        },
        Watch = (client, ns, _, rv, timeout, onError, ct) => ns is null
            ? client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct)
            : client.CoreV1.WatchListNamespacedServiceAsync(ns, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct),
        Metadata = Meta,
    };

    public static readonly KubernetesResourceKind<V1EndpointSlice> EndpointSlice = new()
    {
        Kind = "EndpointSlice",
        List = async (client, ns, _, ct) =>
        {
            var list = ns is null
                ? await client.DiscoveryV1.ListEndpointSliceForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false)
                : await client.DiscoveryV1.ListNamespacedEndpointSliceAsync(ns, cancellationToken: ct).ConfigureAwait(false);
            return ([.. list.Items], list.Metadata?.ResourceVersion);
        },
        Watch = (client, ns, _, rv, timeout, onError, ct) => ns is null
            ? client.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct)
            : client.DiscoveryV1.WatchListNamespacedEndpointSliceAsync(ns, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct),
        Metadata = Meta,
    };

    public static readonly KubernetesResourceKind<V1Pod> Pod = new()
    {
        Kind = "Pod",
        List = async (client, ns, _, ct) =>
        {
            var list = ns is null
                ? await client.CoreV1.ListPodForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false)
                : await client.CoreV1.ListNamespacedPodAsync(ns, cancellationToken: ct).ConfigureAwait(false);
            return ([.. list.Items], list.Metadata?.ResourceVersion);
        },
        Watch = (client, ns, _, rv, timeout, onError, ct) => ns is null
            ? client.CoreV1.WatchListPodForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct)
            : client.CoreV1.WatchListNamespacedPodAsync(ns, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct),
        Metadata = Meta,
    };

    public static readonly KubernetesResourceKind<V1Node> Node = new()
    {
        Kind = "Node",
        ClusterScoped = true,
        List = async (client, _, _, ct) =>
        {
            var list = await client.CoreV1.ListNodeAsync(cancellationToken: ct).ConfigureAwait(false);
            return ([.. list.Items], list.Metadata?.ResourceVersion);
        },
        Watch = (client, _, _, rv, timeout, onError, ct) =>
            client.CoreV1.WatchListNodeAsync(allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct),
        Metadata = Meta,
    };

    /// <summary>
    /// Istio's config kinds (group, plural), read at the version istiod stores (v1) or, on a cluster whose CRDs predate it,
    /// at the version they serve: a security kind silently absent would make every AuthorizationPolicy vanish.
    /// </summary>
    public static readonly IReadOnlyList<KubernetesResourceKind<CustomObject>> Istio =
    [
        Custom("ServiceEntry", "networking.istio.io", "serviceentries"),
        Custom("WorkloadEntry", "networking.istio.io", "workloadentries"),
        Custom("VirtualService", "networking.istio.io", "virtualservices"),
        Custom("DestinationRule", "networking.istio.io", "destinationrules"),
        Custom("Sidecar", "networking.istio.io", "sidecars"),
        Custom("PeerAuthentication", "security.istio.io", "peerauthentications"),
        Custom("AuthorizationPolicy", "security.istio.io", "authorizationpolicies"),
        Custom("RequestAuthentication", "security.istio.io", "requestauthentications"),
    ];

    private static KubernetesResourceKind<CustomObject> Custom(string kind, string group, string plural) => new()
    {
        Kind = kind,
        MayBeAbsent = true,
        Versions = group == "security.istio.io" ? ["v1", "v1beta1"] : ["v1", "v1beta1", "v1alpha3"],
        List = async (client, ns, version, ct) =>
        {
            var list = ns is null
                ? await client.CustomObjects.ListCustomObjectForAllNamespacesAsync(group, version, plural, cancellationToken: ct).ConfigureAwait(false)
                : await client.CustomObjects.ListNamespacedCustomObjectAsync(group, version, ns, plural, cancellationToken: ct).ConfigureAwait(false);
            var json = ToElement(list);
            var items = json.TryGetProperty("items", out var array) && array.ValueKind == JsonValueKind.Array
                ? array.EnumerateArray().Select(i => new CustomObject(i.Clone())).ToList()
                : [];
            return (items, json.TryGetProperty("metadata", out var meta) ? Text(meta, "resourceVersion") : null);
        },
        Watch = (client, ns, version, rv, timeout, onError, ct) => WatchCustom(client, group, version, plural, ns, rv, timeout, onError, ct),
        Metadata = o => (Text(o.Metadata, "namespace"), Text(o.Metadata, "name"), Text(o.Metadata, "resourceVersion")),
    };

    private static async IAsyncEnumerable<(WatchEventType, CustomObject)> WatchCustom(IKubernetes client, string group, string version, string plural, string? ns, string rv, int timeout, Action<Exception> onError, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var events = ns is null
            ? client.CustomObjects.WatchListCustomObjectForAllNamespacesAsync(group, version, plural, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct)
            : client.CustomObjects.WatchListNamespacedCustomObjectAsync(group, version, ns, plural, allowWatchBookmarks: true, resourceVersion: rv, timeoutSeconds: timeout, onError: onError, cancellationToken: ct);
        await foreach (var (type, item) in events.ConfigureAwait(false))
        {
            yield return (type, new CustomObject(ToElement(item)));
        }
    }

    private static (string?, string?, string?) Meta(IKubernetesObject<V1ObjectMeta> item) =>
        (item.Metadata?.NamespaceProperty, item.Metadata?.Name, item.Metadata?.ResourceVersion);

    private static JsonElement ToElement(object? value) => value switch
    {
        JsonElement element => element,
        null => default,
        _ => JsonSerializer.SerializeToElement(value, value.GetType()),
    };

    internal static string? Text(JsonElement element, string property) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}

/// <summary>A custom object as the API serves it (Istio's kinds are read as JSON, not as generated types).</summary>
internal sealed class CustomObject(JsonElement json)
{
    public JsonElement Json { get; } = json;

    public JsonElement Metadata => Json.ValueKind == JsonValueKind.Object && Json.TryGetProperty("metadata", out var meta) ? meta : default;
}
