using System.Text.Json.Nodes;

namespace Mesh.KubernetesFake;

/// <summary>A port of a Service built by <see cref="KubeJson.Service"/>.</summary>
/// <param name="Port">The service port.</param>
/// <param name="Name">Port name (protocol detection reads its prefix: http-, grpc-, tcp-…); null leaves it out.</param>
/// <param name="AppProtocol">appProtocol (http, http2, grpc, tcp, kubernetes.io/h2c…); null leaves it out.</param>
/// <param name="TargetPort">targetPort: an int or a named container port; null leaves it out.</param>
/// <param name="Protocol">TCP, UDP or SCTP.</param>
public sealed record ServicePortSpec(int Port, string? Name = null, string? AppProtocol = null, object? TargetPort = null, string Protocol = "TCP");

/// <summary>An endpoint of an EndpointSlice built by <see cref="KubeJson.EndpointSlice"/>.</summary>
/// <param name="Address">The IP address.</param>
/// <param name="Ready">conditions.ready (null leaves it out: "unknown", which consumers treat as ready).</param>
/// <param name="Serving">conditions.serving.</param>
/// <param name="Terminating">conditions.terminating.</param>
/// <param name="PodName">targetRef (kind Pod) name; null leaves targetRef out.</param>
/// <param name="NodeName">nodeName.</param>
/// <param name="Zone">zone.</param>
/// <param name="PodNamespace">targetRef namespace; defaults to the slice's namespace.</param>
public sealed record EndpointSpec(
    string Address,
    bool? Ready = true,
    bool? Serving = true,
    bool? Terminating = false,
    string? PodName = null,
    string? NodeName = null,
    string? Zone = null,
    string? PodNamespace = null);

/// <summary>A port of an EndpointSlice.</summary>
public sealed record EndpointPortSpec(int Port, string? Name = null, string? AppProtocol = null, string Protocol = "TCP");

/// <summary>JSON helpers: small builders of the objects the mesh reads, Status objects, and merge patch.</summary>
public static class KubeJson
{
    /// <summary>metadata.name of an object ("" when missing).</summary>
    public static string NameOf(JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return obj["metadata"]?["name"]?.GetValue<string>() ?? "";
    }

    /// <summary>metadata.namespace of an object (null when missing).</summary>
    public static string? NamespaceOf(JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return obj["metadata"]?["namespace"]?.GetValue<string>();
    }

    /// <summary>metadata.resourceVersion of an object (null when missing).</summary>
    public static string? ResourceVersionOf(JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return obj["metadata"]?["resourceVersion"]?.GetValue<string>();
    }

    /// <summary>A Status object (kind Status, apiVersion v1, status Failure).</summary>
    public static JsonObject Status(int code, string reason, string message) => new()
    {
        ["kind"] = "Status",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject(),
        ["status"] = "Failure",
        ["message"] = message,
        ["reason"] = reason,
        ["code"] = code,
    };

    /// <summary>metadata with name, namespace (when not null) and labels (when any).</summary>
    public static JsonObject Metadata(string name, string? ns, IReadOnlyDictionary<string, string>? labels = null, IReadOnlyDictionary<string, string>? annotations = null)
    {
        var metadata = new JsonObject { ["name"] = name };
        if (ns is not null)
        {
            metadata["namespace"] = ns;
        }
        if (labels is { Count: > 0 })
        {
            metadata["labels"] = Map(labels);
        }
        if (annotations is { Count: > 0 })
        {
            metadata["annotations"] = Map(annotations);
        }
        return metadata;
    }

    /// <summary>A v1 Namespace.</summary>
    public static JsonObject Namespace(string name, IReadOnlyDictionary<string, string>? labels = null) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Namespace",
        ["metadata"] = Metadata(name, null, labels),
    };

    /// <summary>A v1 Service of type ClusterIP with the given ports and selector.</summary>
    public static JsonObject Service(
        string ns,
        string name,
        IEnumerable<ServicePortSpec> ports,
        IReadOnlyDictionary<string, string>? selector = null,
        string? clusterIp = null,
        IReadOnlyDictionary<string, string>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(ports);
        var portArray = new JsonArray();
        foreach (var p in ports)
        {
            var port = new JsonObject { ["port"] = p.Port, ["protocol"] = p.Protocol };
            if (p.Name is not null)
            {
                port["name"] = p.Name;
            }
            if (p.AppProtocol is not null)
            {
                port["appProtocol"] = p.AppProtocol;
            }
            port["targetPort"] = p.TargetPort switch
            {
                null => p.Port,
                int i => i,
                string s => s,
                _ => throw new ArgumentException("TargetPort must be an int or a string", nameof(ports)),
            };
            portArray.Add(port);
        }
        var spec = new JsonObject { ["type"] = "ClusterIP", ["ports"] = portArray };
        if (selector is { Count: > 0 })
        {
            spec["selector"] = Map(selector);
        }
        if (clusterIp is not null)
        {
            spec["clusterIP"] = clusterIp;
            spec["clusterIPs"] = new JsonArray(clusterIp);
        }
        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Service",
            ["metadata"] = Metadata(name, ns, labels),
            ["spec"] = spec,
        };
    }

    /// <summary>A discovery.k8s.io/v1 EndpointSlice (IPv4) labelled kubernetes.io/service-name = <paramref name="serviceName"/>.</summary>
    public static JsonObject EndpointSlice(
        string ns,
        string name,
        string serviceName,
        IEnumerable<EndpointSpec> endpoints,
        IEnumerable<EndpointPortSpec> ports,
        string addressType = "IPv4")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(ports);
        var endpointArray = new JsonArray();
        foreach (var e in endpoints)
        {
            var conditions = new JsonObject();
            if (e.Ready is { } ready)
            {
                conditions["ready"] = ready;
            }
            if (e.Serving is { } serving)
            {
                conditions["serving"] = serving;
            }
            if (e.Terminating is { } terminating)
            {
                conditions["terminating"] = terminating;
            }
            var endpoint = new JsonObject { ["addresses"] = new JsonArray(e.Address), ["conditions"] = conditions };
            if (e.PodName is not null)
            {
                endpoint["targetRef"] = new JsonObject { ["kind"] = "Pod", ["namespace"] = e.PodNamespace ?? ns, ["name"] = e.PodName };
            }
            if (e.NodeName is not null)
            {
                endpoint["nodeName"] = e.NodeName;
            }
            if (e.Zone is not null)
            {
                endpoint["zone"] = e.Zone;
            }
            endpointArray.Add(endpoint);
        }
        var portArray = new JsonArray();
        foreach (var p in ports)
        {
            var port = new JsonObject { ["port"] = p.Port, ["protocol"] = p.Protocol };
            if (p.Name is not null)
            {
                port["name"] = p.Name;
            }
            if (p.AppProtocol is not null)
            {
                port["appProtocol"] = p.AppProtocol;
            }
            portArray.Add(port);
        }
        return new JsonObject
        {
            ["apiVersion"] = "discovery.k8s.io/v1",
            ["kind"] = "EndpointSlice",
            ["metadata"] = Metadata(name, ns, new Dictionary<string, string>
            {
                ["kubernetes.io/service-name"] = serviceName,
                ["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io",
            }),
            ["addressType"] = addressType,
            ["endpoints"] = endpointArray,
            ["ports"] = portArray,
        };
    }

    /// <summary>A v1 Pod in phase Running (one container) with labels, service account, pod IP and node.</summary>
    public static JsonObject Pod(
        string ns,
        string name,
        IReadOnlyDictionary<string, string>? labels = null,
        string serviceAccountName = "default",
        string? podIp = null,
        string? nodeName = null,
        DateTimeOffset? deletionTimestamp = null)
    {
        var metadata = Metadata(name, ns, labels);
        if (deletionTimestamp is { } deleted)
        {
            metadata["deletionTimestamp"] = deleted.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
            metadata["deletionGracePeriodSeconds"] = 30;
        }
        var spec = new JsonObject
        {
            ["serviceAccountName"] = serviceAccountName,
            ["containers"] = new JsonArray(new JsonObject { ["name"] = "app", ["image"] = "app:latest" }),
        };
        if (nodeName is not null)
        {
            spec["nodeName"] = nodeName;
        }
        var status = new JsonObject { ["phase"] = "Running" };
        if (podIp is not null)
        {
            status["podIP"] = podIp;
            status["podIPs"] = new JsonArray(new JsonObject { ["ip"] = podIp });
        }
        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Pod",
            ["metadata"] = metadata,
            ["spec"] = spec,
            ["status"] = status,
        };
    }

    /// <summary>A v1 Node with topology.kubernetes.io/region and zone labels (left out when null).</summary>
    public static JsonObject Node(string name, string? region = null, string? zone = null, IReadOnlyDictionary<string, string>? labels = null)
    {
        var all = new Dictionary<string, string>(labels ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            ["kubernetes.io/hostname"] = name,
        };
        if (region is not null)
        {
            all["topology.kubernetes.io/region"] = region;
        }
        if (zone is not null)
        {
            all["topology.kubernetes.io/zone"] = zone;
        }
        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Node",
            ["metadata"] = Metadata(name, null, all),
        };
    }

    /// <summary>A custom resource (e.g. networking.istio.io/v1 VirtualService) with the given spec.</summary>
    public static JsonObject CustomResource(string apiVersion, string kind, string ns, string name, JsonObject spec, IReadOnlyDictionary<string, string>? labels = null) => new()
    {
        ["apiVersion"] = apiVersion,
        ["kind"] = kind,
        ["metadata"] = Metadata(name, ns, labels),
        ["spec"] = spec,
    };

    /// <summary>A JSON object of string values.</summary>
    public static JsonObject Map(IReadOnlyDictionary<string, string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var obj = new JsonObject();
        foreach (var (k, v) in values)
        {
            obj[k] = v;
        }
        return obj;
    }

    /// <summary>Applies a JSON merge patch (RFC 7386) to <paramref name="target"/> in place: null removes, objects merge, the rest replaces.</summary>
    public static void MergePatch(JsonObject target, JsonObject patch)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(patch);
        foreach (var (key, value) in patch)
        {
            if (value is null)
            {
                target.Remove(key);
            }
            else if (value is JsonObject patchObject && target[key] is JsonObject targetObject)
            {
                MergePatch(targetObject, patchObject);
            }
            else
            {
                target[key] = value.DeepClone();
            }
        }
    }

    /// <summary>An integer node as long, whichever way it was built (int, long, parsed JSON); null when missing or not an integer.</summary>
    public static long? ReadLong(JsonNode? node) =>
        node is JsonValue value && (value.TryGetValue<long>(out var l) || value.TryGetValue(out int i) && (l = i) == i) ? l : null;

    internal static JsonObject ForVersion(JsonObject stored, FakeResourceType type, string version)
    {
        var copy = (JsonObject)stored.DeepClone();
        copy["apiVersion"] = type.ApiVersion(version);
        copy["kind"] = type.Kind;
        return copy;
    }

    internal static JsonObject DeletedStatus(FakeResourceType type, JsonObject deleted)
    {
        var details = new JsonObject { ["name"] = NameOf(deleted), ["kind"] = type.Plural, ["uid"] = deleted["metadata"]?["uid"]?.DeepClone() };
        if (type.Group.Length > 0)
        {
            details["group"] = type.Group;
        }
        return new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Success",
            ["details"] = details,
        };
    }

    internal static JsonObject BookmarkObject(FakeResourceType type, string version, long resourceVersion) => new()
    {
        ["kind"] = type.Kind,
        ["apiVersion"] = type.ApiVersion(version),
        ["metadata"] = new JsonObject { ["resourceVersion"] = resourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) },
    };
}
