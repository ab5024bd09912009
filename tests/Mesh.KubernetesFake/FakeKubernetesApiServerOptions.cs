namespace Mesh.KubernetesFake;

/// <summary>Options of <see cref="FakeKubernetesApiServer"/>.</summary>
public sealed class FakeKubernetesApiServerOptions
{
    /// <summary>How often watches that asked for bookmarks (allowWatchBookmarks=true) get one. The real server: about a minute.</summary>
    public TimeSpan BookmarkInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The bearer token the kubeconfig carries and every API request must present; null makes a random one.</summary>
    public string? Token { get; set; }

    /// <summary>The namespace of the kubeconfig's context.</summary>
    public string DefaultNamespace { get; set; } = "default";

    /// <summary>
    /// The API server's own audiences: a TokenReview without spec.audiences is checked against these (and answers them in
    /// status.audiences), as the real server does — so a token minted for another audience fails a review that names none.
    /// </summary>
    public IReadOnlyList<string> ApiServerAudiences { get; set; } = ["https://kubernetes.default.svc.cluster.local"];

    /// <summary>Clock for creationTimestamp and the request log.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;
}

/// <summary>How <see cref="FakeKubernetesApiServer.GoDownAsync"/> makes the API server unavailable.</summary>
public enum FakeApiServerOutage
{
    /// <summary>The listener closes: every connection is aborted and new connections are refused until it comes back on the same port.</summary>
    Refuse,

    /// <summary>The listener stays up and answers every request 503 ServiceUnavailable (a Status); open watches are aborted.</summary>
    Unavailable,
}

/// <summary>One request the fake received, as the tests assert on it.</summary>
/// <param name="At">When it arrived.</param>
/// <param name="Method">HTTP method.</param>
/// <param name="Path">URL path.</param>
/// <param name="Query">Query parameters (decoded; the last value of a repeated key).</param>
/// <param name="Resource">The plural resource it addressed ("services", "leases", "tokenreviews"…), or null for discovery.</param>
/// <param name="Group">The resource's API group ("" for core), or null for discovery.</param>
/// <param name="Namespace">The namespace in the path, or null (cluster-scoped or all namespaces).</param>
/// <param name="Name">The object name in the path, or null (list, watch, create).</param>
/// <param name="Verb">get, list, watch, create, update, patch, delete, discovery, or unauthorized.</param>
/// <param name="Protocol">HTTP/1.1 or HTTP/2.</param>
public sealed record FakeApiRequest(
    DateTimeOffset At,
    string Method,
    string Path,
    IReadOnlyDictionary<string, string> Query,
    string? Resource,
    string? Group,
    string? Namespace,
    string? Name,
    string Verb,
    string Protocol)
{
    /// <summary>A query parameter, or null.</summary>
    public string? QueryValue(string key) => Query.TryGetValue(key, out var v) ? v : null;

    /// <summary>True for a watch (watch=1|true).</summary>
    public bool IsWatch => Verb == "watch";

    /// <inheritdoc />
    public override string ToString() =>
        $"{Method} {Path}{(Query.Count == 0 ? "" : "?" + string.Join('&', Query.Select(kv => kv.Key + "=" + kv.Value)))} ({Verb})";
}
