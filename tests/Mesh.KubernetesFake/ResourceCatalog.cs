namespace Mesh.KubernetesFake;

/// <summary>One resource the fake serves: group ("" for core), versions (first = preferred), plural, kind, scope.</summary>
public sealed record FakeResourceType(
    string Group,
    IReadOnlyList<string> Versions,
    string Plural,
    string Kind,
    bool Namespaced,
    IReadOnlyList<string> Verbs,
    IReadOnlyList<string> ShortNames)
{
    /// <summary>"services" for core, "endpointslices.discovery.k8s.io" otherwise (the name the real server uses in messages).</summary>
    public string QualifiedName => Group.Length == 0 ? Plural : Plural + "." + Group;

    /// <summary>The apiVersion string for <paramref name="version"/> ("v1" or "group/v1").</summary>
    public string ApiVersion(string version) => Group.Length == 0 ? version : Group + "/" + version;

    /// <summary>Whether DELETE answers with the deleted object (pods, services, service accounts, custom resources) rather than a Status.</summary>
    public bool ReturnsDeletedObject { get; init; }

    /// <summary>Singular lower-case name, as discovery reports it.</summary>
    public string Singular => Kind.ToLowerInvariant();
}

/// <summary>The resources the fake serves. Objects of one group/resource are shared by all its versions, as on the real server.</summary>
public static class FakeResourceCatalog
{
    private static readonly string[] Crud = ["create", "delete", "get", "list", "patch", "update", "watch"];
    private static readonly string[] CreateOnly = ["create"];

    /// <summary>Every resource type the fake serves.</summary>
    public static IReadOnlyList<FakeResourceType> All { get; } = Build();

    private static FakeResourceType[] Build()
    {
        string[] networkingVersions = ["v1", "v1beta1", "v1alpha3"];
        string[] securityVersions = ["v1", "v1beta1"];
        return
        [
            new("", ["v1"], "services", "Service", true, Crud, ["svc"]) { ReturnsDeletedObject = true },
            new("", ["v1"], "pods", "Pod", true, Crud, ["po"]) { ReturnsDeletedObject = true },
            new("", ["v1"], "nodes", "Node", false, Crud, ["no"]),
            new("", ["v1"], "namespaces", "Namespace", false, Crud, ["ns"]),
            new("", ["v1"], "secrets", "Secret", true, Crud, []),
            new("", ["v1"], "configmaps", "ConfigMap", true, Crud, ["cm"]),
            new("", ["v1"], "serviceaccounts", "ServiceAccount", true, Crud, ["sa"]) { ReturnsDeletedObject = true },
            new("", ["v1"], "endpoints", "Endpoints", true, Crud, ["ep"]),
            new("", ["v1"], "events", "Event", true, Crud, ["ev"]),
            new("discovery.k8s.io", ["v1"], "endpointslices", "EndpointSlice", true, Crud, []),
            new("coordination.k8s.io", ["v1"], "leases", "Lease", true, Crud, []),
            new("authentication.k8s.io", ["v1"], "tokenreviews", "TokenReview", false, CreateOnly, []),
            new("networking.istio.io", networkingVersions, "serviceentries", "ServiceEntry", true, Crud, ["se"]) { ReturnsDeletedObject = true },
            new("networking.istio.io", networkingVersions, "workloadentries", "WorkloadEntry", true, Crud, ["we"]) { ReturnsDeletedObject = true },
            new("networking.istio.io", networkingVersions, "virtualservices", "VirtualService", true, Crud, ["vs"]) { ReturnsDeletedObject = true },
            new("networking.istio.io", networkingVersions, "destinationrules", "DestinationRule", true, Crud, ["dr"]) { ReturnsDeletedObject = true },
            new("networking.istio.io", networkingVersions, "sidecars", "Sidecar", true, Crud, []) { ReturnsDeletedObject = true },
            new("security.istio.io", securityVersions, "peerauthentications", "PeerAuthentication", true, Crud, ["pa"]) { ReturnsDeletedObject = true },
            new("security.istio.io", securityVersions, "authorizationpolicies", "AuthorizationPolicy", true, Crud, ["ap"]) { ReturnsDeletedObject = true },
            new("security.istio.io", securityVersions, "requestauthentications", "RequestAuthentication", true, Crud, ["ra"]) { ReturnsDeletedObject = true },
        ];
    }

    /// <summary>The type served at group/version/plural, or null.</summary>
    public static FakeResourceType? Find(string group, string version, string plural) =>
        All.FirstOrDefault(t => t.Group == group && t.Plural == plural && t.Versions.Contains(version));

    /// <summary>The type of an object from its apiVersion and kind, or null.</summary>
    public static FakeResourceType? FindByKind(string apiVersion, string kind)
    {
        var slash = apiVersion.IndexOf('/', StringComparison.Ordinal);
        var group = slash < 0 ? "" : apiVersion[..slash];
        var version = slash < 0 ? apiVersion : apiVersion[(slash + 1)..];
        return All.FirstOrDefault(t => t.Group == group && t.Kind == kind && t.Versions.Contains(version));
    }

    /// <summary>Groups other than core, in catalog order.</summary>
    public static IEnumerable<string> Groups => All.Where(t => t.Group.Length > 0).Select(t => t.Group).Distinct();
}
