using System.Text.Json.Nodes;

namespace Mesh.KubernetesFake;

/// <summary>A failure the fake answers with a Kubernetes Status object (code, reason, message), as the real server does.</summary>
public sealed class FakeKubernetesStatusException : Exception
{
    /// <summary>Creates the failure.</summary>
    public FakeKubernetesStatusException(int code, string reason, string message)
        : base(message)
    {
        Code = code;
        Reason = reason;
    }

    /// <summary>Creates a 500 InternalError failure.</summary>
    public FakeKubernetesStatusException()
        : this(500, "InternalError", "internal error")
    {
    }

    /// <summary>Creates a 500 InternalError failure with a message.</summary>
    public FakeKubernetesStatusException(string message)
        : this(500, "InternalError", message)
    {
    }

    /// <summary>Creates a 500 InternalError failure with a message and cause.</summary>
    public FakeKubernetesStatusException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = 500;
        Reason = "InternalError";
    }

    /// <summary>HTTP status code (404, 409, 410, …).</summary>
    public int Code { get; }

    /// <summary>Status reason (NotFound, AlreadyExists, Conflict, Expired, …).</summary>
    public string Reason { get; }

    /// <summary>Optional details.name.</summary>
    public string? DetailsName { get; init; }

    /// <summary>Optional details.group.</summary>
    public string? DetailsGroup { get; init; }

    /// <summary>Optional details.kind (the plural resource name, as the real server sets it).</summary>
    public string? DetailsKind { get; init; }

    /// <summary>The Status object the real server would send.</summary>
    public JsonObject ToStatus()
    {
        var status = KubeJson.Status(Code, Reason, Message);
        if (DetailsName is not null || DetailsKind is not null)
        {
            var details = new JsonObject();
            if (DetailsName is not null)
            {
                details["name"] = DetailsName;
            }
            if (!string.IsNullOrEmpty(DetailsGroup))
            {
                details["group"] = DetailsGroup;
            }
            if (DetailsKind is not null)
            {
                details["kind"] = DetailsKind;
            }
            status["details"] = details;
        }
        return status;
    }

    /// <summary>The 403 the real server sends when RBAC denies <paramref name="request"/> to <paramref name="user"/>.</summary>
    public static FakeKubernetesStatusException Forbidden(FakeApiRequest request, string user = "system:serviceaccount:mesh-system:mesh-control-plane")
    {
        ArgumentNullException.ThrowIfNull(request);
        var resource = request.Resource ?? request.Path;
        var qualified = string.IsNullOrEmpty(request.Group) ? resource : resource + "." + request.Group;
        var scope = request.Namespace is null ? "at the cluster scope" : $"in the namespace \"{request.Namespace}\"";
        return new FakeKubernetesStatusException(403, "Forbidden", $"{qualified}{(request.Name is null ? "" : $" \"{request.Name}\"")} is forbidden: User \"{user}\" cannot {request.Verb} resource \"{resource}\" in API group \"{request.Group}\" {scope}")
        {
            DetailsName = request.Name,
            DetailsGroup = request.Group,
            DetailsKind = request.Resource,
        };
    }

    internal static FakeKubernetesStatusException NotFound(FakeResourceType type, string name) =>
        new(404, "NotFound", $"{type.QualifiedName} \"{name}\" not found")
        { DetailsName = name, DetailsGroup = type.Group, DetailsKind = type.Plural };

    internal static FakeKubernetesStatusException AlreadyExists(FakeResourceType type, string name) =>
        new(409, "AlreadyExists", $"{type.QualifiedName} \"{name}\" already exists")
        { DetailsName = name, DetailsGroup = type.Group, DetailsKind = type.Plural };

    internal static FakeKubernetesStatusException Conflict(FakeResourceType type, string name) =>
        new(409, "Conflict", $"Operation cannot be fulfilled on {type.QualifiedName} \"{name}\": the object has been modified; please apply your changes to the latest version and try again")
        { DetailsName = name, DetailsGroup = type.Group, DetailsKind = type.Plural };

    internal static FakeKubernetesStatusException Expired(long requested, long oldest) =>
        new(410, "Expired", $"too old resource version: {requested} ({oldest})");

    internal static FakeKubernetesStatusException BadRequest(string message) => new(400, "BadRequest", message);

    internal static FakeKubernetesStatusException Invalid(FakeResourceType type, string name, string message) =>
        new(422, "Invalid", $"{type.Kind} \"{name}\" is invalid: {message}")
        { DetailsName = name, DetailsGroup = type.Group, DetailsKind = type.Kind };
}
